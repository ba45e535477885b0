"""A benchmark's results on disk: ``<out>.json`` (its record plus the provenance of this run) and ``<out>.md``."""

from __future__ import annotations

import json
from pathlib import Path


def write(out: str | Path, record: dict, lines: list[str]) -> None:
    """Write ``record`` with a ``provenance`` entry (commit, versions, threads, command, wall time) as JSON to
    ``out`` and ``lines`` as markdown beside it (``.md``), then print the table and both paths."""
    from afd_lightning.run import provenance

    made_with = provenance.collect(device="cpu", wall_s=provenance.process_seconds()).to_json()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**record, "provenance": made_with}, indent=2) + "\n")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n" + "\n".join(lines) + f"\n\nwritten to {out} and {out.with_suffix('.md')}")
