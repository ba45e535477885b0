"""Which tests of `make test-fast` took longer than they should in the last full run.

`make test-fast` runs the tests without the ``slow`` mark and is meant to finish within a minute on the 2-core
reference machine; a test that trains, attacks a trained model, composes many configs or starts a process
belongs under ``slow`` (pyproject.toml). This reads the durations that `make test-durations` kept
(``benchmarks/results/test_durations.txt``: pytest's ``--durations`` lines), asks pytest which tests carry no
``slow`` mark, and lists each such test function whose setup + call + teardown reached the threshold, slowest
first. It exits 1 when it lists any, so `make test-durations` says so.

    python tools/slow_marks.py [DURATIONS_FILE] [--threshold SECONDS]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DURATIONS = REPO / "benchmarks" / "results" / "test_durations.txt"
LINE = re.compile(r"^\s*([0-9.]+)s (setup|call|teardown)\s+(\S+)")


def durations(text: str) -> dict[str, float]:
    """Seconds per test id (setup + call + teardown) from pytest's ``--durations`` lines."""
    seconds: dict[str, float] = defaultdict(float)
    for line in text.splitlines():
        match = LINE.match(line)
        if match:
            seconds[match.group(3)] += float(match.group(1))
    return {test_id: round(s, 2) for test_id, s in seconds.items()}  # pytest prints centiseconds


def unmarked_ids() -> set[str]:
    """The ids of the tests `make test-fast` runs (collected by pytest, not guessed from the source)."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "not slow", "-p", "no:cacheprovider"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"slow_marks: pytest could not collect the tests:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return {line.strip() for line in done.stdout.splitlines() if "::" in line}


def too_slow(seconds: dict[str, float], fast: set[str], threshold: float) -> list[tuple[float, str]]:
    """(worst seconds, test function) for each unmarked function with a test at or over the threshold."""
    worst: dict[str, float] = {}
    for test_id, s in seconds.items():
        if test_id in fast and s >= threshold:
            function = test_id.split("[", 1)[0]
            worst[function] = max(worst.get(function, 0.0), s)
    return sorted(((s, f) for f, s in worst.items()), reverse=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("durations", nargs="?", default=str(DURATIONS))
    parser.add_argument("--threshold", type=float, default=0.5, help="seconds (default 0.5)")
    args = parser.parse_args(argv)
    path = Path(args.durations)
    if not path.is_file():
        print(f"slow_marks: no durations file at {path}; run `make test-durations` first", file=sys.stderr)
        return 2
    found = too_slow(durations(path.read_text(encoding="utf-8")), unmarked_ids(), args.threshold)
    for s, function in found:
        print(f"{s:6.2f} s  {function}")
    if found:
        print(
            f"slow_marks: {len(found)} test function(s) without the slow mark took >= {args.threshold} s",
            file=sys.stderr,
        )
        return 1
    print(f"slow_marks: every test over {args.threshold} s carries the slow mark")
    return 0


if __name__ == "__main__":
    sys.exit(main())
