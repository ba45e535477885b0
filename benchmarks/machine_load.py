"""How busy the machine was around a benchmark measurement, read from /proc (Linux; no dependencies).

A timing taken while other processes use the CPU is not a property of our code. Benchmarks wrap
each configuration in :class:`LoadWatch`::

    with LoadWatch(own_threads=2) as watch:
        subprocess.run([...])            # the measured configuration (a child process)
    record["load"] = watch.report        # before/after snapshots, others' CPU during the run, busy flag

What is recorded:

* ``before`` / ``after``: ``/proc/loadavg`` (1, 5, 15 min) and the top CPU users other than this
  process and its children, each sampled over ``sample_s`` seconds (pid, name, % of one core);
* ``others_cores``: CPU time used by every other process *during* the measurement, in cores, i.e.
  (busy jiffies of the whole machine from /proc/stat - CPU time of this process and the children it
  waited for) / wall time. A measured command's own descendants count as its own even when they outlive their
  parent (an evaluation's fork server and its workers): the watch makes this process their sub-reaper
  (``prctl(PR_SET_CHILD_SUBREAPER)``), so they are re-parented here, and reaps them when the measurement ends;
* ``busy`` (bool) and ``busy_reasons``: the figure is flagged when, during the run, other processes
  used more than ``OTHERS_CORES_LIMIT`` of a core (0.10), or when, before or after it, another process
  used more than ``PROCESS_PCT_LIMIT`` (10%) of a core, or the 1-minute load exceeded
  ``LOAD_MARGIN`` (0.5) + the threads of our own configuration.

Where /proc is missing (macOS, Windows) every figure is recorded as unknown and ``busy`` is None.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

OTHERS_CORES_LIMIT = 0.10
PROCESS_PCT_LIMIT = 10.0
LOAD_MARGIN = 0.5
_PROC = Path("/proc")


def available() -> bool:
    return (_PROC / "stat").is_file() and (_PROC / "loadavg").is_file()


def loadavg() -> list[float] | None:
    try:
        return [float(v) for v in (_PROC / "loadavg").read_text().split()[:3]]
    except OSError:
        return None


def _busy_jiffies() -> int:
    """Non-idle CPU time of the whole machine since boot, in clock ticks (first line of /proc/stat)."""
    fields = [int(v) for v in (_PROC / "stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal (guest is inside user)


def _own_cpu_s() -> float:
    """CPU seconds of this process plus the children it has waited for."""
    self_, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return self_.ru_utime + self_.ru_stime + children.ru_utime + children.ru_stime


def _process_ticks() -> dict[int, tuple[str, int]]:
    """pid -> (name, utime + stime in ticks) for every process we may read."""
    out = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:  # gone or not ours to read
            continue
        name = raw[raw.find("(") + 1 : raw.rfind(")")]
        rest = raw[raw.rfind(")") + 2 :].split()
        out[int(entry.name)] = (name, int(rest[11]) + int(rest[12]))  # fields 14 and 15: utime, stime
    return out


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process we may read (from /proc/<pid>/stat)."""
    parents: dict[int, int] = {}
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            try:
                raw = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(raw[raw.rfind(")") + 2 :].split()[1])
    return parents


def _own_pids() -> set[int]:
    """This process and every descendant still alive."""
    parents = _parents()
    own, grew = {os.getpid()}, True
    while grew:
        new = {pid for pid, ppid in parents.items() if ppid in own and pid not in own}
        own |= new
        grew = bool(new)
    return own


def top_processes(sample_s: float = 0.5, top: int = 5) -> list[dict]:
    """The ``top`` processes by CPU use over ``sample_s`` seconds, this process and its children left out."""
    hz = os.sysconf("SC_CLK_TCK")
    first = _process_ticks()
    time.sleep(sample_s)
    second = _process_ticks()
    own = _own_pids()
    rows = []
    for pid, (name, ticks) in second.items():
        if pid in own or pid not in first:
            continue
        pct = 100.0 * (ticks - first[pid][1]) / hz / sample_s
        if pct > 0:
            rows.append({"pid": pid, "name": name, "cpu_pct": round(pct, 1)})
    return sorted(rows, key=lambda r: -r["cpu_pct"])[:top]


def snapshot(sample_s: float = 0.5) -> dict:
    if not available():
        return {"loadavg": None, "top_others": None}
    return {"loadavg": loadavg(), "top_others": top_processes(sample_s)}


def judge(before: dict, after: dict, others_cores: float | None, own_threads: int) -> tuple[bool | None, list[str]]:
    """Whether a figure measured between ``before`` and ``after`` was taken on a busy machine, and why."""
    if others_cores is None and before.get("loadavg") is None:
        return None, ["no /proc: machine load unknown"]
    reasons = []
    if others_cores is not None and others_cores > OTHERS_CORES_LIMIT:
        reasons.append(f"other processes used {others_cores:.2f} cores during the run")
    for when, snap in (("before", before), ("after", after)):
        load = snap.get("loadavg")
        if load is not None and load[0] > LOAD_MARGIN + own_threads:
            reasons.append(f"1-min load {load[0]:.2f} {when} > {LOAD_MARGIN} + {own_threads} own threads")
        for proc in snap.get("top_others") or []:
            if proc["cpu_pct"] > PROCESS_PCT_LIMIT:
                reasons.append(f"{proc['name']} (pid {proc['pid']}) at {proc['cpu_pct']:.0f}% CPU {when}")
    return bool(reasons), reasons


def _become_subreaper() -> bool:
    """Make this process the parent of its orphaned descendants (Linux ``PR_SET_CHILD_SUBREAPER``)."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # 36: PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def _children() -> set[int]:
    me = os.getpid()
    return {pid for pid, ppid in _parents().items() if ppid == me}


def _reap_adopted(known: set[int], timeout_s: float = 30.0) -> None:
    """Wait for the children that were not ours when the measurement began (orphans re-parented here), so their
    CPU time, and that of the children they waited for, joins ``RUSAGE_CHILDREN``."""
    deadline = time.monotonic() + timeout_s
    pending = _children() - known
    while pending and time.monotonic() < deadline:
        for pid in list(pending):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                pending.discard(pid)
        if pending:
            time.sleep(0.05)
        pending |= _children() - known  # a late orphan (a worker whose server ended first)


class LoadWatch:
    """Context manager recording the machine's load around one measurement (see the module doc)."""

    def __init__(self, own_threads: int, sample_s: float = 0.5):
        self.own_threads, self.sample_s = own_threads, sample_s
        self.report: dict = {}

    def __enter__(self) -> LoadWatch:
        self.before = snapshot(self.sample_s)
        self._t0 = time.perf_counter()
        if available():
            self._adopting = _become_subreaper()
            self._known = _children()
            self._jiffies0, self._own0 = _busy_jiffies(), _own_cpu_s()
        return self

    def __exit__(self, *exc) -> None:
        wall = time.perf_counter() - self._t0
        others = None
        if available() and self._adopting:
            _reap_adopted(self._known)
        if available() and wall > 0:
            machine_s = (_busy_jiffies() - self._jiffies0) / os.sysconf("SC_CLK_TCK")
            others = max(0.0, (machine_s - (_own_cpu_s() - self._own0)) / wall)
        after = snapshot(self.sample_s)
        busy, reasons = judge(self.before, after, others, self.own_threads)
        self.report = {
            "before": self.before,
            "after": after,
            "others_cores": None if others is None else round(others, 3),
            "busy": busy,
            "busy_reasons": reasons,
            "wall_s": round(wall, 2),
            "rule": (
                f"busy if others > {OTHERS_CORES_LIMIT} cores during the run, or another process > "
                f"{PROCESS_PCT_LIMIT:.0f}% CPU or 1-min load > {LOAD_MARGIN} + own threads before/after"
            ),
        }
