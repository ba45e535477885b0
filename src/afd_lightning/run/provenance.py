"""Where a number came from: one typed record stored beside every result.

``metrics.json`` (train.py), the checkpoints, the evaluation's ``results.json``, ``afd-summarize``'s
``summary.json`` and the benchmark JSON files carry a :class:`Provenance` under the key ``provenance``:

* the code: the git commit and whether the working tree had uncommitted changes, or, for an installed
  package with no checkout, its version;
* the versions of the libraries that compute the numbers;
* the CPU threads torch actually used and the device (CPU kernels sum in another order with another
  thread count, so the same seed gives other numbers with another count);
* the seed, the command line and its Hydra overrides, the start time and the wall time.

Two results are comparable when :func:`differences` finds nothing in :data:`MUST_MATCH` (the code and
the thread count); ``afd-summarize`` refuses to average runs that differ unless told to.

Nothing here imports torch at module level: ``from_json`` and ``differences`` stay cheap for readers.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# The libraries whose versions can change a number.
PACKAGES = (
    "torch",
    "torchvision",
    "pytorch-lightning",
    "torchmetrics",
    "hydra-core",
    "omegaconf",
    "numpy",
    "scikit-learn",
    "advertorch",
    "foolbox",
    "pyautoattack",
)
# What two results must share to be averaged together: the code and the CPU thread count.
MUST_MATCH = ("code", "threads")


@dataclass
class Provenance:
    """The code, libraries, threads, device, seed, command and time behind one result."""

    version: str  # afd_lightning.__version__
    commit: str | None  # git commit of the checkout the package was imported from; None without a checkout
    dirty: bool | None  # uncommitted changes (tracked or untracked, .gitignore respected) in that checkout
    threads: int | None  # torch.get_num_threads() when the record was made (None: a process that ran no torch)
    threads_setting: str  # the ``threads`` config value asked for (auto, N, or "resumed: N")
    device: str  # cpu, cuda:0, ...
    seed: int | None
    command: str  # the process's command line, shell-quoted
    overrides: list[str] = field(default_factory=list)  # the Hydra overrides, when run through Hydra
    versions: dict[str, str] = field(default_factory=dict)  # python and PACKAGES
    started: str = ""  # ISO time, UTC
    wall_s: float | None = None  # seconds from ``started`` to when the record was last written
    cpu: dict[str, str] = field(default_factory=dict)  # cpu_info(): same code and threads on another CPU can differ

    @property
    def code(self) -> str:
        """The code in one string: ``<commit>``, ``<commit>+dirty``, or ``afd-lightning <version>``."""
        if self.commit is None:
            return f"afd-lightning {self.version} (no git checkout)"
        return self.commit + ("+dirty" if self.dirty else "")

    def to_json(self) -> dict[str, Any]:
        """Plain values only (a checkpoint read with ``weights_only=True`` holds it)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Provenance:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:  # the rule of every record we read (evaluation/report/schema.py Record.from_json): refused
            raise ValueError(f"provenance record: unknown fields {unknown}; it was not written by this package")
        missing = [
            f.name
            for f in dataclasses.fields(cls)
            if f.name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise ValueError(f"provenance record lacks {', '.join(missing)}: it was not written by this package")
        return cls(**{k: v for k, v in data.items() if k in names})

    def start_clock(self) -> None:
        """Measure ``wall_s`` from now: :meth:`snapshot` fills it in (the start is not a field, so not in the JSON)."""
        self._clock: float = time.perf_counter()

    def snapshot(self) -> dict[str, Any]:
        """:meth:`to_json` with ``wall_s`` brought up to now (for a record made by :func:`collect`)."""
        start = getattr(self, "_clock", None)
        if start is not None:
            self.wall_s = round(time.perf_counter() - start, 2)
        return self.to_json()


def git_state(where: Path | None = None) -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the git checkout holding the package's source, or ``(None, None)``.

    Only a checkout whose ``src/afd_lightning`` is the package being run counts: an installed wheel
    that happens to sit inside some other repository reports no commit.
    """
    package = Path(__file__).resolve().parents[1]  # src/afd_lightning (this module is run/provenance.py)
    where = where or package

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(where), *args], capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()

    try:
        top = Path(git("rev-parse", "--show-toplevel")).resolve()
        if where == package and (top / "src" / "afd_lightning").resolve() != package:
            return None, None
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain"))
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit, dirty


def cpu_info() -> dict[str, str]:
    """The CPU a result was computed on: architecture, model name and the instruction set of torch's kernels.

    Torch picks its CPU code path by instruction set (AVX2, AVX512...), so the same code, seed and thread count
    can sum in another order on another machine: paper_digits_nt seed 0 with threads=1 at commit 2f56887 left
    0.0% under PGD-20 on one machine of this project and 0.56% on another (docs/results.md).
    """
    out = {"machine": platform.machine()}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    out["model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        out["model"] = platform.processor() or "unknown"
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            out["kernels"] = str(torch.backends.cpu.get_cpu_capability())
        except (AttributeError, RuntimeError):
            out["kernels"] = "unknown"
    return out


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    if "torch" in sys.modules:  # with its build tag (+cpu, +cu130): CPU and CUDA builds differ
        out["torch"] = str(sys.modules["torch"].__version__)
    return out


def hydra_overrides() -> list[str]:
    """The command-line overrides of the running Hydra job; [] outside one."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            return [str(o) for o in HydraConfig.get().overrides.task]
    except (ImportError, ValueError):
        pass
    return []


def collect(
    seed: int | None = None,
    device: str | None = None,
    threads_setting: Any = "auto",
    overrides: list[str] | None = None,
    argv: list[str] | None = None,
    wall_s: float | None = None,
) -> Provenance:
    """A record of this process now: call it after the thread count is set (``threads.set_threads``).

    ``threads`` is torch's count if torch is imported; a process that never imports torch (``afd-summarize``)
    records None and does not import it for this. ``wall_s`` given (e.g. :func:`process_seconds` in a
    benchmark that records at its end) is kept; otherwise :meth:`Provenance.snapshot` measures from now.
    """
    # The package root is imported before any of its modules, so its version is read from sys.modules: importing
    # the root here would make this low layer depend on everything the root re-exports (the import contract).
    version = str(sys.modules["afd_lightning"].__version__)
    torch = sys.modules.get("torch")

    commit, dirty = git_state()
    record = Provenance(
        version=version,
        commit=commit,
        dirty=dirty,
        threads=torch.get_num_threads() if torch is not None else None,
        threads_setting=str(threads_setting),
        device=str(device or "cpu"),
        seed=None if seed is None else int(seed),
        command=shlex.join(sys.argv if argv is None else argv),
        overrides=list(hydra_overrides() if overrides is None else overrides),
        versions=package_versions(),
        started=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        cpu=cpu_info(),
    )
    if wall_s is None:
        record.start_clock()
    else:
        record.wall_s = round(float(wall_s), 2)
    return record


def process_seconds() -> float | None:
    """Wall seconds since this process started (Linux /proc; None elsewhere)."""
    import os

    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return round(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 2)


def stored_threads(checkpoint: dict | None) -> int | None:
    """The CPU thread count a checkpoint's run trained with (None: an older checkpoint, or none)."""
    record = ((checkpoint or {}).get("afd_lightning") or {}).get("provenance") or {}
    threads = record.get("threads")
    return threads if isinstance(threads, int) and not isinstance(threads, bool) and 0 < threads <= 4096 else None


def threads_for_resume(setting: Any, chosen: int, checkpoint: dict | None) -> tuple[int, str]:
    """``(threads, setting)`` a run uses: a resumed ``threads=auto`` run takes the count its checkpoint used.

    Another count sums in another order, so a resume that changed it would not continue bit for bit. An
    explicit ``threads=N`` always wins. The stored count is a hint from a file: it is bounded by the cores
    this process may use and by ``OMP_NUM_THREADS`` (:func:`~afd_lightning.process.threads.bounded_stored_threads`),
    and the log says when it is not used.
    """
    from afd_lightning.process.threads import bounded_stored_threads

    stored = stored_threads(checkpoint)
    if str(setting) != "auto" or stored is None or stored == chosen:
        return chosen, str(setting)
    count, note = bounded_stored_threads(stored)
    if note is not None:
        log.info("threads: %d (auto on resume: %s; the resume may not continue bit for bit)", chosen, note)
        if count == chosen:
            return chosen, f"auto (resume: {note})"
    import torch

    torch.set_num_threads(count)
    log.info("threads: %d (auto on resume: the count the checkpoint was trained with; pass threads=N to change)", count)
    return count, f"auto (resumed with the checkpoint's {count})"


def differences(records: dict[str, Provenance | dict | None], keys: tuple[str, ...] = MUST_MATCH) -> dict[str, dict]:
    """``{key: {value: [names]}}`` for each key in ``keys`` on which the named records disagree.

    A missing record counts as the value ``"unknown"`` (results made before provenance was recorded).
    """
    values: dict[str, dict[str, list[str]]] = {k: {} for k in keys}
    for name, record in records.items():
        if isinstance(record, dict):
            try:
                record = Provenance.from_json(record)
            except (TypeError, ValueError):
                record = None
        for key in keys:
            value = "unknown" if record is None else str(getattr(record, key))
            values[key].setdefault(value, []).append(name)
    return {k: v for k, v in values.items() if len(v) > 1}


def _values(records: dict[str, Provenance | dict | None], key: str) -> list[str]:
    out = set()
    for record in records.values():
        if isinstance(record, dict):
            try:
                record = Provenance.from_json(record)
            except (TypeError, ValueError):
                record = None
        out.add("unknown" if record is None else str(getattr(record, key)))
    return sorted(out)


NOT_RECORDED = "not recorded"
# What summary.json keeps of each run's record, and what a table footer says the runs share.
RUN_FACTS = ("commit", "dirty", "threads", "cpu", "device", "versions")


def run_facts(record: Provenance | dict | None) -> dict[str, Any]:
    """One run's :data:`RUN_FACTS` from its record; a fact the record lacks is ``"not recorded"``, never a guess."""
    if isinstance(record, dict):
        try:
            record = Provenance.from_json(record)
        except (TypeError, ValueError):
            record = None
    if record is None:
        return dict.fromkeys(RUN_FACTS, NOT_RECORDED)
    cpu = record.cpu if isinstance(record.cpu, dict) else {}
    return {
        "commit": record.commit if record.commit is not None else NOT_RECORDED,
        "dirty": record.dirty if record.dirty is not None else NOT_RECORDED,
        "threads": record.threads if record.threads is not None else NOT_RECORDED,
        "cpu": " / ".join(str(cpu[k]) for k in ("model", "kernels") if cpu.get(k)) or NOT_RECORDED,
        "device": record.device or NOT_RECORDED,
        "versions": dict(record.versions) if record.versions else NOT_RECORDED,
    }


def shared_facts(facts: list[dict[str, Any]]) -> dict[str, str]:
    """For each fact, the one value every run shares, ``"mixed: a, b"`` naming the values, or ``"not recorded"``."""
    out = {}
    for key in RUN_FACTS:
        if key == "versions":
            values = {
                NOT_RECORDED if f[key] == NOT_RECORDED else f"torch {f[key].get('torch', NOT_RECORDED)}" for f in facts
            }
        else:
            values = {str(f[key]) for f in facts}
        ordered = sorted(values)
        out[key] = ordered[0] if len(ordered) == 1 else "mixed: " + ", ".join(ordered)
    return out


def made_with(train: dict[str, Provenance | dict | None], evals: dict[str, Provenance | dict | None]) -> dict:
    """What a group of averaged runs was made with, for ``summary.json``.

    ``{"train": {"code": [...], "threads": [...], "device": [...]}, "eval": {...}, "differ": {...},
    "runs": {path: facts}, "shared": {fact: value}}``: the distinct values among the training runs
    (``metrics.json``) and among their evaluations (``results.json``); ``differ`` maps ``train``/``eval``
    to :func:`differences` where they disagree; ``runs`` each training run's :func:`run_facts` and
    ``shared`` what they share (:func:`shared_facts`), which table footers render.
    """
    out: dict[str, Any] = {"differ": {}}
    out["runs"] = {name: run_facts(record) for name, record in train.items()}
    out["shared"] = shared_facts(list(out["runs"].values())) if train else {}
    for part, records in (("train", train), ("eval", evals)):
        out[part] = {key: _values(records, key) for key in ("code", "threads", "device")} if records else {}
        found = differences(records) if records else {}
        if found:
            out["differ"][part] = found
    return out


def describe_differences(what: str, differ: dict[str, dict]) -> str:
    """One line naming, for ``what``, each key on which its runs differ and which runs have which value."""
    parts = []
    for part, found in differ.items():
        for key, by_value in found.items():
            listed = "; ".join(f"{value}: {', '.join(names)}" for value, names in sorted(by_value.items()))
            parts.append(f"{part} {key} differs ({listed})")
    return f"{what}: " + "; ".join(parts)
