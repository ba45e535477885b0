"""The tests' fork server (helpers/zygote.py) runs a command as a new process would: argv, folder, environment,
streams, exit status, signals and timeouts."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from helpers import zygote

SCRIPT = """
import os, sys, time
print("argv", sys.argv[1:], "cwd", os.getcwd(), "x", os.environ.get("ZYGOTE_X"), "path0", sys.path[0])
print("to stderr", file=sys.stderr)
if sys.argv[1] == "sleep":
    time.sleep(60)
if sys.argv[1] == "crash":
    raise ValueError("boom")
sys.exit(int(sys.argv[1]))
"""


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "prog.py"
    path.write_text(SCRIPT)
    return path


@pytest.mark.slow
def test_a_script_gets_its_argv_folder_environment_and_exit_status(script, tmp_path):
    done = zygote.run([sys.executable, script, "3"], cwd=tmp_path, env={"ZYGOTE_X": "y"}, timeout=60)
    assert done.returncode == 3
    assert f"argv ['3'] cwd {tmp_path} x y path0 {tmp_path}" in done.stdout and done.stderr == "to stderr\n"
    crashed = zygote.run([script, "crash"], cwd=tmp_path, env={}, timeout=60)
    assert crashed.returncode == 1 and "ValueError: boom" in crashed.stderr and "Traceback" in crashed.stderr


@pytest.mark.slow
def test_a_forked_command_can_be_signalled_and_timed_out(script, tmp_path):
    log = tmp_path / "log"
    proc = zygote.popen([script, "sleep"], cwd=tmp_path, env={}, stdout=log)
    assert proc.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == -signal.SIGTERM and "to stderr" in log.read_text()
    with pytest.raises(subprocess.TimeoutExpired):
        zygote.run([script, "sleep"], cwd=tmp_path, env={}, timeout=0.5)


@pytest.mark.slow
def test_an_entry_point_runs_as_its_console_script(tmp_path):
    done = zygote.run(["afd-summarize", str(tmp_path / "missing")], timeout=60)
    assert done.returncode == 1 and "not a folder" in done.stderr and "Traceback" not in done.stderr
