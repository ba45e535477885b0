"""Is Square at least as strong as SPSA, sample by sample?  The evidence behind the paper suite's gradient-free check.

For each checkpoint: the same evaluation images (eval.py's seeded subset), SPSA as the paper suite ran it
(conf/eval/attack/spsa.yaml, in suite=full) and Square at the budget the paper suite now uses
(conf/eval/suite/paper.yaml, ``--square-queries``), both at the Table 1 ε. A paired count per model: images SPSA broke that Square left
correct (``spsa_only``), and the reverse (``square_only``). Square replaces SPSA in ``suite=paper`` only if,
for every model, ``spsa_only`` is 0 or smaller than ``square_only``.

    python benchmarks/square_vs_spsa.py --ckpt RUN/checkpoints/last.ckpt [--ckpt ...] --n-samples 200 \\
        --threads 1 --out benchmarks/results/square_vs_spsa.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def robust_mask(attack, model, x, y, eps: float, batch: int = 100):
    """Per sample: still correctly classified after ``attack`` at ``eps``."""
    import torch

    keep = []
    for i in range(0, len(x), batch):
        xb, yb = x[i : i + batch], y[i : i + batch]
        adv = attack.perturb(model, xb, yb, eps)
        with torch.no_grad():
            keep.append(model(adv).argmax(1) == yb)
    return torch.cat(keep)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt", action="append", required=True, help="a checkpoint (repeatable)")
    parser.add_argument("--name", action="append", default=[], help="a name per checkpoint (default: its run folder)")
    parser.add_argument("--n-samples", default="200")
    parser.add_argument("--square-queries", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    import torch
    from eval_setup import load_eval
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from results_file import write

    from afd_lightning.evaluation.report.tables import markdown_table

    torch.set_num_threads(args.threads)
    rows = []
    for i, ckpt in enumerate(args.ckpt):
        name = args.name[i] if i < len(args.name) else Path(ckpt).parents[1].name
        cfg, lm, meta, x, y = load_eval(
            ckpt, args.n_samples, "suite=full", f"suite.attacks.square.n_queries={args.square_queries}"
        )
        nodes = {"spsa": cfg.suite.attacks.spsa, "square": cfg.suite.attacks.square}
        model = lm.model.eval()
        eps = float(meta["eps"])
        row = {"model": name, "checkpoint": str(ckpt), "eps": eps, "n_samples": len(x)}
        with torch.no_grad():
            clean = model(x).argmax(1) == y
        masks = {}
        for key in ("spsa", "square"):
            spec = OmegaConf.to_container(nodes[key], resolve=True)
            spec.pop("by_family", None)
            spec["eps"] = [0.0, eps]
            attack = instantiate({k: v for k, v in spec.items() if v is not None})
            torch.manual_seed(0)
            start = time.perf_counter()
            masks[key] = robust_mask(attack, model, x, y, eps) & clean
            row[f"{key}_seconds"] = round(time.perf_counter() - start, 1)
            row[f"{key}_accuracy"] = round(float(masks[key].float().mean()), 4)
        row["spsa_only"] = int((~masks["spsa"] & masks["square"]).sum())  # SPSA broke, Square did not
        row["square_only"] = int((masks["spsa"] & ~masks["square"]).sum())
        row["supports_switch"] = row["spsa_only"] == 0 or row["spsa_only"] < row["square_only"]
        rows.append(row)
        print(row, flush=True)
    header = ["model", "ε", "n", "SPSA acc", "Square acc", "SPSA only", "Square only", "SPSA s", "Square s"]
    table = [
        [
            r["model"],
            r["eps"],
            r["n_samples"],
            f"{100 * r['spsa_accuracy']:.1f}",
            f"{100 * r['square_accuracy']:.1f}",
            r["spsa_only"],
            r["square_only"],
            r["spsa_seconds"],
            r["square_seconds"],
        ]
        for r in rows
    ]
    title = f"Square ({args.square_queries} queries) vs SPSA per sample: images broken by only one of them"
    write(args.out, {"square_queries": args.square_queries, "rows": rows}, [title, "", markdown_table(header, table)])
    return 0 if all(r["supports_switch"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
