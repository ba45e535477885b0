"""The model card (``README.md``) of an ``afd-export`` folder: what the colleague runs, what was measured.

Every string in it that comes from a file (the checkpoint's dataset, method, network, command; an
evaluation's model names and labels) goes through :mod:`afd_lightning.files.escape`: the front matter is
written by a YAML dumper, text and table cells are escaped and capped, commands are code spans. Numbers
must be numbers. The card says exactly how to load the folder, ``trust=`` included when the network is
the user's own code (which the folder does not hold).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from afd_lightning.evaluation.report.tables import markdown_table
from afd_lightning.files.escape import code_span, md_text, one_line, yaml_front_matter
from afd_lightning.store.export import FORMAT, FORMAT_VERSION, ExportError

PAPERS = {
    "AFD": "Bashivan, Richards & Rish, Adversarial Feature Desensitization, NeurIPS 2021 (arXiv:2006.04621)",
    "AdversarialTraining": "Madry et al., Towards Deep Learning Models Resistant to Adversarial Attacks (arXiv:1706.06083)",
    "TRADES": "Zhang et al., Theoretically Principled Trade-off between Robustness and Accuracy (arXiv:1901.08573)",
    "NaturalTraining": "standard cross-entropy training (no adversarial examples)",
}
CITATION = """@inproceedings{bashivan2021afd,
  title     = {Adversarial Feature Desensitization},
  author    = {Bashivan, Pouya and Bayat, Reza and Ibrahim, Adam and Ahuja, Kartik and Faramarzi, Mojtaba and
               Laleh, Touraj and Richards, Blake and Rish, Irina},
  booktitle = {Advances in Neural Information Processing Systems},
  year      = {2021}
}"""
MAX_MODELS = 50  # models of one results.json shown in a card


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ExportError(f"{where} is {one_line(repr(value), 40)}, not a number; the card was not written")
    return float(value)


def accuracies(results_path: Path | None) -> tuple[dict[str, dict[str, float | None]], dict]:
    """``{model name: {column: accuracy}}`` at the Table 1 ε (worst case included), and facts, from results.json."""
    if results_path is None:
        return {}, {}
    from afd_lightning.evaluation.report.schema import EvaluationResults
    from afd_lightning.files.reader import read_json

    data = read_json(results_path, what="--results")
    try:
        results = EvaluationResults.from_json(data)
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise ExportError(f"--results {results_path} is not an evaluation results.json of ours: {err}") from err
    eps = _number(results.table_eps, "results.json table_eps")
    if len(results.models) > MAX_MODELS:
        raise ExportError(f"--results {results_path} holds {len(results.models)} models; pass the model's own")
    table = {}
    for name, record in results.models.items():
        row: dict[str, float | None] = {"Clean": _number(record.clean_accuracy, f"{name}: clean_accuracy")}
        for attack, curve in record.attacks.items():
            label = curve.label or attack
            accs = [_number(a, f"{name}: {label} accuracy") for a in curve.accuracy]
            eps_list = [_number(e, f"{name}: {label} eps") for e in curve.eps]
            hit = [a for e, a in zip(eps_list, accs) if e is not None and eps is not None and math.isclose(e, eps)]
            if hit:
                row[label] = hit[0]
        worst = record.worst_case
        if worst is not None and len(worst.attacks) > 1:
            row["Worst case"] = _number(worst.accuracy, f"{name}: worst_case accuracy")
        table[name] = row
    facts = {"table_eps": eps, "n_samples": results.n_samples, "dataset": results.dataset}
    return table, facts


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def how_to_load(target: str) -> list[str]:
    """The lines that tell a colleague how to load the folder: ``trust=`` and the code needed for an outside network."""
    own = target.startswith("afd_lightning.")
    package = target.split(".", 1)[0]
    call = (
        'model = afd_lightning.load_classifier("path/to/this/folder")'
        if own
        else f'model = afd_lightning.load_classifier("path/to/this/folder", trust=["{package}"])'
    )
    lines = [
        "Load it without running code from the folder (`pip install afd-lightning`):",
        "",
        "```python",
        "import afd_lightning",
        "",
        call + "  # eval mode; images in [0, 1], NCHW -> logits",
        "```",
        "",
        "or evaluate it: `afd-eval ckpt_path=path/to/this/folder suite=quick threads=1`"
        + ("" if own else f" `trust=[{package}]`")
        + ".",
        "",
    ]
    if own:
        lines += ["The network is one of afd-lightning's own: nothing else is needed.", ""]
    else:
        lines += [
            f"The network ({code_span(target)}) is your colleague's own code, not part of this folder: the package "
            f"{code_span(package)} must be importable, and `trust=` names it (a stored config never chooses code "
            "to run on its own). Without them loading fails and says so.",
            "",
        ]
    return lines


def model_card(config_json: dict, provenance: dict | None, accuracies: dict, facts: dict, ckpt: str) -> str:
    """The README.md of an export folder (Hugging Face model-card front matter, then the card)."""
    recipe = config_json["recipe"]
    dataset_cfg = recipe.get("dataset") or {}
    meta = dataset_cfg.get("meta") or {}
    method = one_line(recipe.get("method"), 60)
    dataset = one_line(dataset_cfg.get("name") or "?", 60)
    target = one_line(config_json["model"]["_target_"], 200)
    front = yaml_front_matter(
        {
            "library_name": "afd-lightning",
            "license": "mit",
            "tags": ["adversarial-robustness", "image-classification", method.lower()],
            "datasets": [dataset],
        }
    )
    attack = recipe.get("attack") if isinstance(recipe.get("attack"), dict) else None
    lines = [
        "",
        f"# {md_text(method)} on {md_text(dataset)} ({md_text(target.rsplit('.', 1)[-1])})",
        "",
        "Exported from an afd-lightning checkpoint with `afd-export`.",
        "",
        *how_to_load(target),
        "## Method",
        "",
        f"{md_text(method)}: {PAPERS.get(method, 'see the method config in config.json')}.",
        "",
        "## Recipe",
        "",
        f"- dataset: {md_text(dataset)} ({md_text(meta.get('channels', '?'))}x{md_text(meta.get('image_size', '?'))}"
        f"x{md_text(meta.get('image_size', '?'))}, {md_text(meta.get('num_classes', '?'))} classes), "
        f"seed {md_text(recipe.get('seed'))}",
        f"- epochs: {md_text(recipe.get('max_epochs'))}, precision {md_text(recipe.get('precision'))}, batch size "
        f"{md_text(dataset_cfg.get('batch_size'))}",
        f"- training attack: {md_text((attack or {}).get('name', 'none'))}"
        + (f" (ε {md_text(attack.get('eps'))}, {md_text(attack.get('steps'))} steps)" if attack else ""),
        f"- network: {code_span(target)}, embedding size {md_text(config_json.get('embed_dim'))}",
        "- the full method config and network config are in `config.json`",
        "",
        "## Threat model",
        "",
        f"L∞ ε = {md_text(meta.get('eps'))} (L2 {md_text(meta.get('eps_l2'))}, L1 {md_text(meta.get('eps_l1'))}) "
        "on images in [0, 1]; input normalisation, if any, is inside the network.",
        "",
        "## Training time",
        "",
    ]
    wall = provenance.get("wall_s") if provenance else None
    if isinstance(wall, (int, float)) and not isinstance(wall, bool) and math.isfinite(wall):
        lines.append(
            f"{wall:.0f} s on {md_text(provenance.get('device', '?'), 40)} with "  # type: ignore[union-attr]
            f"{md_text(provenance.get('threads', '?'), 10)} thread(s)."  # type: ignore[union-attr]
        )
    else:
        lines.append("Not recorded in the checkpoint.")
    lines += ["", "## Robust accuracy", ""]
    if accuracies:
        for name, row in accuracies.items():
            lines += [
                f"{md_text(name, 100)}: accuracy (%) on {md_text(facts.get('n_samples'))} test images at "
                f"ε = {md_text(facts.get('table_eps'))}"
                + (" (worst case: robust only where every attack failed)" if "Worst case" in row else "")
                + ":",
                "",
                markdown_table([md_text(c, 60) for c in row], [[_pct(v) for v in row.values()]]),
                "",
            ]
    else:
        lines += ["No evaluation was given (`afd-export ... --results <eval dir>/results.json` adds it).", ""]
    lines += ["## Provenance", ""]
    if provenance:
        code = provenance.get("commit") or f"afd-lightning {provenance.get('version')}"
        versions = provenance.get("versions")
        versions = versions if isinstance(versions, dict) else {}
        lines += [
            f"- code: {md_text(code, 60)}{'+dirty' if provenance.get('dirty') is True else ''}",
            f"- command: {code_span(provenance.get('command', '?'), 500)}",
            f"- started: {md_text(provenance.get('started', '?'), 40)}",
            f"- versions: {md_text(', '.join(f'{k} {v}' for k, v in sorted(versions.items())), 600)}",
        ]
    lines += [f"- exported from: {code_span(Path(ckpt).name)} by afd-export (format {FORMAT} {FORMAT_VERSION})", ""]
    lines += [
        "## Licence",
        "",
        "MIT (the afd-lightning licence); the training data keeps its own licence.",
        "",
        "## Citation",
        "",
        "```bibtex",
        CITATION,
        "```",
        "",
    ]
    return front + "\n".join(lines)
