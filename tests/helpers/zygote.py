"""Command-line runs for the tests without paying the imports each time: a fork server (a "zygote").

A fresh ``python train.py ...`` spends about 8 s of CPU importing torch, Lightning, torchmetrics and torchvision
before it reads its first option (``python -X importtime -c "import pytorch_lightning"`` on the 2-core test machine),
and the suite starts dozens of them. The zygote is one clean interpreter per test process that has imported those
libraries and nothing else, and has run no test and no torch operation. For each command it forks: the child is a
new process (its own pid, exit status, signals, files), that sets its working folder, environment, ``sys.argv`` and
standard streams as the command would, runs the script (``runpy``, as ``python train.py`` does) or the console
entry point, runs the exit handlers and exits with the command's status.

What a fork does not renew, and where the tests keep a fresh interpreter instead:
- anything a library read from the environment when it was imported (``OMP_NUM_THREADS`` in OpenMP, the hash seed):
  our code reads ``OMP_NUM_THREADS`` itself when it runs, which the child's environment serves;
- the import of a module: the tests that check what a command imports (``test_conventions``), that the installed
  console scripts start (``test_install``), or that compare separate interpreters bit for bit, keep ``subprocess``.

``run`` mirrors ``subprocess.run`` (capture_output / stdout files, timeout, check=False) and ``popen`` the parts of
``subprocess.Popen`` the tests use (``pid``, ``poll``, ``wait``, ``send_signal``, ``kill``, ``returncode``).
"""

from __future__ import annotations

import atexit
import json
import os
import runpy
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"

# What the commands import on their way in; the modules of this package are imported too, so the child runs the
# same code a new interpreter would (the suite runs one commit).
PRELOAD = (
    "torch",
    "torchvision",
    "torchmetrics",
    "pytorch_lightning",
    "hydra",
    "omegaconf",
    "scipy.stats",
    "afd_lightning.train",
    "afd_lightning.evaluate",
    "afd_lightning.summarize.cli",
    "afd_lightning.share.export",
    "afd_lightning.methods",
    "afd_lightning.evaluation.pipeline",
)

# console script name -> "module:function", as pyproject.toml's [project.scripts]
ENTRY_POINTS = {
    "afd-train": "afd_lightning.train:main",
    "afd-eval": "afd_lightning.evaluate:main",
    "afd-summarize": "afd_lightning.summarize.cli:main",
    "afd-export": "afd_lightning.share.export:main",
}


# ------------------------------------------------------------------------------------------------ the server side
def _exit_code(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _child(req: dict) -> None:
    """In the forked process: become the command, run it, exit with its status (never returns)."""
    code = 1
    try:
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        stdin = os.open(os.devnull, os.O_RDONLY)
        os.dup2(stdin, 0)
        out = os.open(req["stdout"], os.O_WRONLY | os.O_CREAT | (os.O_APPEND if req["append"] else os.O_TRUNC), 0o644)
        os.dup2(out, 1)
        if req["stderr"] is None:
            os.dup2(out, 2)
        else:
            err = os.open(req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(err, 2)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        argv = req["argv"]
        extra = [p for p in req["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
        sys.argv = list(argv)
        code = 0
        try:
            if argv[0] in ENTRY_POINTS:
                sys.path[:0] = extra
                module, func = ENTRY_POINTS[argv[0]].split(":")
                result = getattr(__import__(module, fromlist=[func]), func)()
                code = result if isinstance(result, int) else 0
            else:
                script = os.path.abspath(argv[0])
                sys.path[:0] = [os.path.dirname(script), *extra]  # as `python script.py` puts the script's folder first
                runpy.run_path(script, run_name="__main__")
        except SystemExit as exc:
            code = _exit_code(exc)
        except BaseException:  # noqa: BLE001  (a command's crash: its traceback on stderr, status 1, as python does)
            traceback.print_exc()
            code = 1
        # the interpreter's own exit order: threading's shutdown hooks first (loky stops its worker processes in
        # one; without it multiprocessing's exit handler waits for them forever, as a joblib sweep did), then atexit
        threading._shutdown()  # type: ignore[attr-defined]
        atexit._run_exitfuncs()
    except BaseException:  # noqa: BLE001  (setting up the child failed: said on stderr, status 1)
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _returncode(status: int) -> int:
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def serve() -> None:
    """Read one JSON request per line on stdin, answer one JSON line on stdout."""
    for name in PRELOAD:
        __import__(name)
    reply = sys.stdout
    print(json.dumps({"ready": os.getpid()}), file=reply, flush=True)
    done: dict[int, int] = {}
    for line in sys.stdin:
        req = json.loads(line)
        op = req["op"]
        if op == "spawn":
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(req)
            answer: dict = {"pid": pid}
        elif op == "wait":  # timeout None: until it exits; 0: poll
            pid, timeout = req["pid"], req["timeout"]
            deadline = None if timeout is None else time.monotonic() + timeout
            while pid not in done:
                got, status = os.waitpid(pid, 0 if deadline is None else os.WNOHANG)
                if got == pid:
                    done[pid] = _returncode(status)
                elif time.monotonic() >= deadline:  # type: ignore[operator]
                    break
                else:
                    time.sleep(0.02)
            answer = {"returncode": done.get(pid)}
        else:
            answer = {"error": f"unknown op {op!r}"}
        print(json.dumps(answer), file=reply, flush=True)


# ------------------------------------------------------------------------------------------------ the test side
class _Zygote:
    def __init__(self) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]).rstrip(":"))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "helpers.zygote"],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        hello = self._read()
        assert "ready" in hello, hello

    def _read(self) -> dict:
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError(f"the test zygote exited ({self.proc.wait()})")
        return json.loads(line)

    def ask(self, **req) -> dict:
        self.proc.stdin.write(json.dumps(req) + "\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()  # type: ignore[union-attr]
            self.proc.wait(timeout=30)


_ZYGOTE: _Zygote | None = None


def _zygote() -> _Zygote:
    global _ZYGOTE
    if _ZYGOTE is None or _ZYGOTE.proc.poll() is not None:
        _ZYGOTE = _Zygote()
        atexit.register(_ZYGOTE.close)
    return _ZYGOTE


class Forked:
    """The part of ``subprocess.Popen`` the tests use, for a command forked by the zygote."""

    def __init__(self, argv: list[str], cwd: Path, env: dict, stdout: Path, stderr: Path | None, append: bool):
        self.args = list(argv)
        self.pid: int = _zygote().ask(
            op="spawn",
            argv=[str(a) for a in argv],
            cwd=str(cwd),
            env={str(k): str(v) for k, v in env.items()},
            stdout=str(stdout),
            stderr=None if stderr is None else str(stderr),
            append=append,
        )["pid"]
        self.returncode: int | None = None

    def _wait(self, timeout: float | None) -> int | None:
        if self.returncode is None:
            self.returncode = _zygote().ask(op="wait", pid=self.pid, timeout=timeout)["returncode"]
        return self.returncode

    def poll(self) -> int | None:
        return self._wait(0)

    def wait(self, timeout: float | None = None) -> int:
        code = self._wait(timeout)
        if code is None:
            raise subprocess.TimeoutExpired(self.args, timeout)  # type: ignore[arg-type]
        return code

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _command(args: list) -> list[str]:
    """``[sys.executable, "train.py", ...]`` or ``["train.py", ...]`` -> the zygote's argv (script or entry point)."""
    args = [str(a) for a in args]
    if args and args[0] == sys.executable:
        args = args[1:]
    if not args or args[0].startswith("-"):
        raise ValueError(f"the zygote runs a script or an entry point, not {args[:3]}")
    return args


def popen(args: list, *, cwd: Path = REPO, env: dict | None = None, stdout: Path, append: bool = False) -> Forked:
    """Start a command, stdout and stderr together into the file ``stdout`` (as ``stderr=subprocess.STDOUT``)."""
    return Forked(_command(args), cwd, dict(os.environ) if env is None else env, Path(stdout), None, append)


def run(
    args: list,
    *,
    cwd: Path = REPO,
    env: dict | None = None,
    timeout: float | None = None,
    capture_output: bool = True,
    text: bool = True,
    check: bool = False,
) -> subprocess.CompletedProcess:
    """``subprocess.run`` for a script or entry point, forked from the zygote; output captured as text."""
    assert capture_output and text, "the zygote's run captures stdout and stderr as text"
    with tempfile.TemporaryDirectory(prefix="zygote-") as tmp:
        out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
        proc = Forked(_command(args), cwd, dict(os.environ) if env is None else env, out, err, False)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        result = subprocess.CompletedProcess(
            proc.args, code, out.read_text(errors="replace"), err.read_text(errors="replace")
        )
    if check:
        result.check_returncode()
    return result


if __name__ == "__main__":
    serve()
