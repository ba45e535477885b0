"""Copy a study's per-run records into the repository: what ``afd-summarize`` reads, nothing else.

    python tools/collect_runs.py SWEEP_DIR docs/results/STUDY/runs[/PART]

For every training run below ``SWEEP_DIR`` (a folder holding ``metrics.json`` and ``.hydra/config.yaml``) it copies
``metrics.json``, ``.hydra/{config,overrides,hydra}.yaml`` and every ``eval_*/results.json`` into
``DEST/<run folder>/`` (a study made of several sweeps gets one ``PART`` folder per sweep); checkpoints, logs and
figures stay behind. Then
``afd-summarize docs/results/STUDY/runs --out docs/results/STUDY`` (``make docs-data``) rebuilds the study's summary
from the committed records alone (tests/test_records.py checks that it does, value for value).

Files are read through afd_lightning.files.reader and written through afd_lightning.files.writer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from afd_lightning.files.reader import is_regular_file, read_bytes
from afd_lightning.files.writer import write_bytes_atomic

RUN_FILES = ("metrics.json", ".hydra/config.yaml", ".hydra/overrides.yaml", ".hydra/hydra.yaml")


def collect(sweep: Path, dest: Path) -> list[Path]:
    """Copy each run's records from ``sweep`` into ``dest``; returns the files written."""
    from afd_lightning.summarize.discovery import walk_files

    written = []
    for metrics in walk_files(sweep, "metrics.json"):
        run = metrics.parent
        if not is_regular_file(run / ".hydra" / "config.yaml"):
            continue
        target_dir = dest / run.relative_to(sweep)
        files = [f for f in RUN_FILES if is_regular_file(run / f)]
        files += [p.relative_to(run).as_posix() for p in sorted(run.glob("eval_*/results.json")) if is_regular_file(p)]
        for name in files:
            target = target_dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(target, read_bytes(run / name, what="run record"))
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sweep", type=Path, help="the folder the runs were written to (hydra.sweep.dir)")
    parser.add_argument("dest", type=Path, help="docs/results/<study>/runs, or a part folder below it")
    args = parser.parse_args(argv)
    written = collect(args.sweep, args.dest)
    size = sum(p.stat().st_size for p in written)
    print(f"{len(written)} files ({size / 1e6:.1f} MB) -> {args.dest}")
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
