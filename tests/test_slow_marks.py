"""tools/slow_marks.py reads pytest's durations and names the unmarked test functions that were too slow."""

from __future__ import annotations

import sys

from helpers.compose import REPO

sys.path.insert(0, str(REPO / "tools"))
import slow_marks  # noqa: E402

TEXT = """\
============================= slowest durations =============================
3.10s setup    tests/a.py::test_trains[x]
0.20s call     tests/a.py::test_trains[x]
0.40s call     tests/a.py::test_trains[y]
0.30s call     tests/b.py::test_quick
0.30s teardown tests/b.py::test_quick
9.00s call     tests/c.py::test_marked
(12 durations < 0.1s hidden.)
1 failed, 3 passed in 12.00s
"""


def test_durations_add_setup_call_and_teardown_per_test():
    seconds = slow_marks.durations(TEXT)
    assert seconds == {
        "tests/a.py::test_trains[x]": 3.3,
        "tests/a.py::test_trains[y]": 0.4,
        "tests/b.py::test_quick": 0.6,
        "tests/c.py::test_marked": 9.0,
    }


def test_only_unmarked_functions_at_or_over_the_threshold_are_listed_worst_first():
    seconds = slow_marks.durations(TEXT)
    fast = {"tests/a.py::test_trains[x]", "tests/a.py::test_trains[y]", "tests/b.py::test_quick"}
    found = slow_marks.too_slow(seconds, fast, threshold=0.5)
    assert [f for _, f in found] == ["tests/a.py::test_trains", "tests/b.py::test_quick"]
    assert found[0][0] == 3.3  # the worst parametrization stands for its function
    assert slow_marks.too_slow(seconds, fast, threshold=5.0) == []  # c.py's 9 s test carries the mark
