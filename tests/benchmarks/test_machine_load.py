"""benchmarks/machine_load.py counts a measured command's orphaned descendants as its own CPU time."""

from __future__ import annotations

import subprocess
import sys

import pytest

from helpers.compose import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import machine_load  # noqa: E402

# The child starts a grandchild that outlives it (as an evaluation's fork server outlives the evaluation) and burns
# about a second of CPU after its parent has exited.
ORPHAN = """
import os, time
if os.fork() == 0:
    time.sleep(0.3)
    end = time.process_time() + 1.0
    while time.process_time() < end:
        pass
    os._exit(0)
"""


@pytest.mark.slow
def test_an_orphaned_grandchild_is_reaped_and_counted_as_own_cpu():
    before = machine_load._own_cpu_s()
    with machine_load.LoadWatch(own_threads=1, sample_s=0.05):
        subprocess.run([sys.executable, "-c", ORPHAN], check=True)
    assert machine_load._own_cpu_s() - before >= 0.9  # the grandchild's second, reaped by the watch
