"""``afd-summarize <folder>``: mean ± std over seeds of every recipe's runs, in the layout of the paper's Table 1.

Below ``<folder>`` (a Hydra sweep directory, or any folder of runs) it finds

* training runs: a ``metrics.json`` beside a ``.hydra/config.yaml`` (what ``train.py`` writes), and
* evaluations: ``results.json`` files written by ``eval.py``, matched to their run through the
  checkpoint each evaluated model came from (or, failing that, the run folder they lie in).

Runs are grouped by recipe: the experiment preset (``experiment=paper_digits_afd``), else the method,
plus any other command-line override except the seed and output settings; each group is one row, its
columns the mean ± sample standard deviation (n - 1) over its runs, in %. Where the dataset is one of
the paper's, the paper's Table 1 numbers follow each row. Written to ``<folder>`` (or ``--out``) as
``summary.md``, ``summary.csv`` and ``summary.json``; ``--wandb auto|online|offline`` also logs the table
to Weights & Biases (offline without an API key).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Literal, cast

from afd_lightning.errors import AFDUserError
from afd_lightning.evaluation.report.tables import markdown_table
from afd_lightning.files.escape import one_line
from afd_lightning.files.writer import refuse_symlinked_folders, write_text_atomic
from afd_lightning.summarize import compare as comparing
from afd_lightning.summarize.discovery import EVAL_COLUMNS, TRAIN_COLUMNS, Run, attach_evaluations, find_runs

log = logging.getLogger(__name__)

# Table 1 of the paper (Bashivan et al. 2021): Clean, PGD-L∞ (WB), FGSM (WB), PGD-L∞ (BB), FGSM (BB), in %.
# The ResNet rows (RN5 for MNIST, RN18 for CIFAR), i.e. the ones our presets reproduce; † rows are the
# authors' runs of AT / TRADES / NT.
PAPER_TABLE1 = {
    ("mnist", "NT"): ("98.81±0.03", "2.03±0.23", "9.72±0.01", "2.08±0.16", "9.74±0.0"),
    ("mnist", "AT"): ("99.15±0.07", "94.98±0.09", "97.1±0.11", "98.96±0.05", "98.92±0.08"),
    ("mnist", "TRADES"): ("97.72±0.11", "89.87±0.87", "95.18±1.02", "96.88±0.4", "95.08±1.49"),
    ("mnist", "AFD"): ("98.49±0.16", "92.75±0.32", "95.95±0.46", "98.11±0.25", "97.97±0.25"),
    ("cifar10", "NT"): ("95.40", "0.12", "47.79", "12.00", "54.65"),
    ("cifar10", "AT"): ("83.58", "41.05", "50.12", "83.20", "82.88"),
    ("cifar10", "TRADES"): ("82.22", "52.30", "58.16", "80.36", "79.69"),
    ("cifar10", "AFD"): ("87.83", "72.45", "76.43", "86.28", "85.06"),
    ("cifar100", "NT"): ("76.12", "0.01", "9.67", "1.55", "15.43"),
    ("cifar100", "AT"): ("55.78", "20.39", "25.09", "53.83", "53.25"),
    ("cifar100", "TRADES"): ("55.48", "27.36", "30.46", "54.13", "53.16"),
    ("cifar100", "AFD"): ("62.54", "49.89", "51.36", "58.95", "56.59"),
}

PAPER_COLUMNS = 5  # the paper's Table 1 has the first five


class SummaryError(AFDUserError):
    """Nothing to summarise, or a folder that does not exist."""


def _stats(values: list[float]) -> dict:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else None
    return {
        "mean": round(mean, 4),
        "std": None if std is None else round(std, 4),
        "n": len(values),
        "values": [round(v, 4) for v in values],
    }


def summarise(runs: list[Run]) -> list[dict]:
    """One dict per recipe (dataset, recipe): its method, network, seeds, runs, and per column mean/std/n."""
    groups: dict[tuple, list[Run]] = defaultdict(list)
    for run in runs:
        groups[(run.dataset, run.recipe)].append(run)
    rows = []
    for (dataset, recipe), members in sorted(groups.items()):
        seeds = [r.seed for r in members]
        if len(set(seeds)) < len(seeds):
            log.warning("recipe %s on %s: several runs share a seed (%s)", recipe, dataset, seeds)
        columns = {}
        for key, _ in EVAL_COLUMNS + TRAIN_COLUMNS:
            values = [r.values[key] for r in members if key in r.values]
            if values:
                columns[key] = _stats(values)
        method = members[0].method
        # the paper's row for this dataset, else for its family's paper dataset (mnist10k: MNIST's)
        paper = PAPER_TABLE1.get((dataset, method)) or PAPER_TABLE1.get((members[0].family or "", method))
        rows.append(
            {
                "recipe": recipe,
                "method": method,
                "dataset": dataset,
                "network": members[0].network,
                "seeds": seeds,
                "runs": [r.name for r in members],
                "columns": columns,
                "paper": None if paper is None else dict(zip([k for k, _ in EVAL_COLUMNS[:PAPER_COLUMNS]], paper)),
            }
        )
    return rows


def _cell(stat: dict | None, n_runs: int) -> str:
    if stat is None:
        return "–"
    text = f"{stat['mean']:.2f}" if stat["std"] is None else f"{stat['mean']:.2f} ± {stat['std']:.2f}"
    return text if stat["n"] == n_runs else f"{text} (n={stat['n']})"


def markdown(rows: list[dict]) -> str:
    cols = [(k, h) for k, h in EVAL_COLUMNS + TRAIN_COLUMNS if any(k in r["columns"] for r in rows)]
    head = ["Method", "Recipe", "Dataset", "Network", "n"] + [h for _, h in cols]
    table = []
    for r in rows:
        n = len(r["runs"])
        table.append(
            [r["method"], r["recipe"], r["dataset"], r["network"], str(n)]
            + [_cell(r["columns"].get(k), n) for k, _ in cols]
        )
        if r["paper"]:
            table.append(
                [f"{r['method']} (paper)", "Table 1", r["dataset"], "", ""] + [r["paper"].get(k, "") for k, _ in cols]
            )
    note = (
        "Accuracy (%), mean ± sample std over the n runs of each recipe (fewer where a cell says so; seeds "
        "in summary.json). "
        "WB/BB/APGD-CE/AA: eval.py at its Table 1 eps; BB needs source_ckpt. Paper rows: Table 1 of "
        "Bashivan et al. 2021 (ResNet rows), shown where the dataset is the paper's"
    )
    if any(r["dataset"] == "mnist10k" for r in rows):
        note += "; mnist10k rows show the paper's full-MNIST numbers"
    return note + ".\n\n" + markdown_table(head, table) + "\n"


def csv_text(rows: list[dict]) -> str:
    """summary.csv: one line per recipe, mean/std/n of every column."""
    keys = [k for k, _ in EVAL_COLUMNS + TRAIN_COLUMNS]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        ["recipe", "method", "dataset", "network", "seeds"] + [f"{k}_{s}" for k in keys for s in ("mean", "std", "n")]
    )
    for r in rows:
        stats = [r["columns"].get(k, {}) for k in keys]
        writer.writerow(
            [one_line(r["recipe"]), r["method"], r["dataset"], r["network"], " ".join(map(str, r["seeds"]))]
            + [s.get(x, "") if s.get(x) is not None else "" for s in stats for x in ("mean", "std", "n")]
        )
    return buffer.getvalue()


def log_wandb(rows: list[dict], out_dir: Path, mode: str) -> str:
    """The summary as a W&B table (offline without an API key); returns the mode used."""
    import wandb

    from afd_lightning.run.loggers import resolve_wandb_mode

    resolved = resolve_wandb_mode(mode)
    if resolved == "disabled":
        return resolved
    keys = [k for k, _ in EVAL_COLUMNS + TRAIN_COLUMNS]
    online_or_offline = cast(Literal["online", "offline"], resolved)
    run = wandb.init(project="afd-lightning", job_type="summary", mode=online_or_offline, dir=str(out_dir))
    try:
        data = [
            [r["recipe"], r["method"], r["dataset"], len(r["seeds"])]
            + [r["columns"].get(k, {}).get(s) for k in keys for s in ("mean", "std")]
            for r in rows
        ]
        columns: list[str | int] = ["recipe", "method", "dataset", "n"]
        columns += [f"{k}_{s}" for k in keys for s in ("mean", "std")]
        run.log({"summary/table1": wandb.Table(columns=columns, data=data)})
    finally:
        run.finish()
    return resolved


def check_provenance(rows: list[dict], runs: list[Run], allow_mixed: bool = False) -> None:
    """Record in each row what its runs were made with; refuse to average runs of other code or thread counts.

    The code (git commit, +dirty) and the CPU thread count change the numbers of a seeded run, so a
    mean over runs that differ in them mixes two experiments. ``allow_mixed`` (``--allow-mixed``)
    averages them anyway; the differences stay in summary.json (``rows[i].provenance.differ``).
    """
    from afd_lightning.run import provenance

    by_path = {r.name: r for r in runs}
    mixed = []
    for row in rows:
        members = [by_path[p] for p in row["runs"]]
        row["provenance"] = provenance.made_with(
            {r.name: r.provenance for r in members},
            {path: made for r in members for path, made in r.eval_provenance.items()},
        )
        if row["provenance"]["differ"]:
            mixed.append(
                provenance.describe_differences(f"{row['recipe']} on {row['dataset']}", row["provenance"]["differ"])
            )
    if mixed and not allow_mixed:
        raise SummaryError(
            "refusing to average runs made with different code or CPU thread counts (the same seed gives other "
            "numbers):\n  " + "\n  ".join(mixed) + "\nRerun them with the same commit and threads=N, or pass "
            "--allow-mixed to average them anyway (the differences are recorded in summary.json)."
        )
    for line in mixed:
        log.warning("averaged anyway (--allow-mixed): %s", line)


def run(
    root: Path,
    out_dir: Path | None = None,
    wandb_mode: str | None = None,
    allow_mixed: bool = False,
    compare: tuple[comparing.Selector, comparing.Selector] | None = None,
) -> list[dict]:
    """Find, match, group and write; returns the summary rows (also written to summary.json).

    ``compare`` (``--compare A B``): also group A against group B (:mod:`afd_lightning.summarize.compare`),
    printed and written to compare.json / compare.md beside the summary.
    """
    from afd_lightning.run import provenance

    record = provenance.collect()
    root = Path(root)
    if not root.is_dir():
        raise SummaryError(f"{root} is not a folder: pass a sweep directory or a folder of training runs")
    runs = find_runs(root)
    if not runs:
        raise SummaryError(
            f"no training runs below {root}: a run is a folder with metrics.json and .hydra/config.yaml "
            "(train.py writes both when it finishes)"
        )
    matched = attach_evaluations(root, runs)
    rows = summarise(runs)
    check_provenance(rows, runs, allow_mixed)
    comparison = comparing.compare(runs, *compare, provenance=record.snapshot()) if compare else None
    out_dir = Path(out_dir) if out_dir else root
    out_dir.mkdir(parents=True, exist_ok=True)
    refuse_symlinked_folders(out_dir)  # every file below is written through the no-follow writer
    write_text_atomic(out_dir / "summary.md", markdown(rows))
    write_text_atomic(out_dir / "summary.csv", csv_text(rows))
    write_text_atomic(
        out_dir / "summary.json",
        json.dumps(
            {
                "root": str(root),
                "runs": len(runs),
                "evaluations_matched": matched,
                "rows": rows,
                "provenance": record.snapshot(),  # this afd-summarize; each row's runs: rows[i].provenance
            },
            indent=2,
        )
        + "\n",
    )
    from afd_lightning.evaluation.report.saturation_gap import plot_gap_vs_saturation

    figure = plot_gap_vs_saturation(runs, out_dir / "gap_vs_saturation.png")
    if figure:
        log.info("PGD − AA gap against saturation, one point per run: %s", figure)
    if wandb_mode:
        log_wandb(rows, out_dir, wandb_mode)
    log.info("%d runs, %d evaluated models, %d recipes -> %s", len(runs), matched, len(rows), out_dir / "summary.md")
    if comparison is not None:
        json_path, _ = comparing.write(comparison, out_dir)
        print(comparing.markdown(comparison))
        log.info("comparison -> %s", json_path)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="afd-summarize", description=__doc__.split("\n")[0])
    parser.add_argument("root", type=Path, help="a sweep directory or any folder with training runs below it")
    parser.add_argument("--out", type=Path, default=None, help="where summary.{md,csv,json} go (default: root)")
    parser.add_argument(
        "--wandb",
        default=None,
        choices=["auto", "online", "offline"],
        help="also log the table to W&B (auto: online with an API key, else offline)",
    )
    parser.add_argument(
        "--allow-mixed",
        action="store_true",
        help="average runs made with different code (git commit) or CPU thread counts instead of refusing",
    )
    parser.add_argument(
        "--compare",
        nargs=2,
        metavar=("A", "B"),
        default=None,
        help="compare two groups of runs, e.g. 'method=AFD,recipe=paper_digits_afd' 'method=AT' (keys: "
        f"{', '.join(comparing.FIELDS)}): A - B per metric with a 95%% bootstrap CI, Welch's and McNemar's p",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        selectors = None
        if args.compare:
            selectors = (comparing.Selector.parse(args.compare[0]), comparing.Selector.parse(args.compare[1]))
        rows = run(args.root, args.out, args.wandb, allow_mixed=args.allow_mixed, compare=selectors)
    except AFDUserError as err:  # SummaryError, CompareError, a link refused, an unreadable file: one line
        print(f"error: {err}", file=sys.stderr)
        return 1
    if not selectors:  # with --compare, run() printed the comparison (the summary is in summary.md)
        print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
