"""``afd-export <ckpt> <dir>``: a model folder anyone can load without running code from it.

The folder follows the Hugging Face hub's conventions, so uploading it publishes a usable model:

* ``model.safetensors``: the weights of the encoder E and the category decoder Dc (no pickle; AFD's
  adversarial decoder Da and the optimizer state are training-only and left out);
* ``config.json``: the network's config (checked against the allow-list of
  :mod:`afd_lightning.stored_config`), the input convention and the training recipe;
* ``README.md``: the model card (method, recipe, dataset, threat model, training time, accuracies from
  an evaluation's ``results.json`` when one is given, provenance, licence, citation).

``afd_lightning.load_classifier(<dir>)`` (:func:`load_export`) reads it back: JSON and safetensors only,
and the network is built from the checked config exactly as from a checkpoint's.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from afd_lightning.errors import AFDUserError

if TYPE_CHECKING:
    from afd_lightning.nets.protocol import RobustClassifier

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
CARD = "README.md"
RESULTS = "results.json"
FORMAT = "afd-lightning-export"
FORMAT_VERSION = 1
# Files a folder of ours may hold; anything else (a pytorch_model.bin, a .ckpt, a pickle) is refused.
ALLOWED_FILES = {WEIGHTS, CONFIG, CARD, RESULTS, ".gitattributes"}
MAX_CONFIG_BYTES = 1_000_000
_PICKLE_OR_TORCH = (b"\x80", b"PK\x03\x04")  # pickle protocol >= 2, torch.save's zip archive

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


class ExportError(AFDUserError):
    """An export folder that cannot be written or read safely."""


# --------------------------------------------------------------------------- writing


def _json_plain(value: Any, where: str) -> Any:
    """``value`` if it survives a JSON round trip unchanged in kind (plain data only)."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise ExportError(f"{where} is not plain JSON data ({err}); it cannot be exported") from err


def _recipe(config: Mapping) -> dict:
    """The parts of the run config that say how the network was trained."""
    method = dict(config.get("method") or {})
    dataset = dict(config.get("dataset") or {})
    trainer = dict(config.get("trainer") or {})
    return {
        "method": str(method.get("_target_", "?")).rsplit(".", 1)[-1],
        "method_config": method,
        "attack": config.get("attack"),
        "dataset": {
            "name": (dataset.get("meta") or {}).get("name"),
            **{k: v for k, v in dataset.items() if k != "data_dir"},
        },
        "max_epochs": trainer.get("max_epochs"),
        "precision": trainer.get("precision"),
        "seed": config.get("seed"),
    }


def _accuracies(results_path: Path | None) -> tuple[dict[str, dict[str, float | None]], dict]:
    """``{model name: {column: accuracy}}`` at the Table 1 ε, and facts about the evaluation, from results.json."""
    if results_path is None:
        return {}, {}
    from afd_lightning.evaluation.report.schema import EvaluationResults

    try:
        results = EvaluationResults.from_json(json.loads(Path(results_path).read_text()))
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise ExportError(f"--results {results_path} is not an evaluation results.json of ours: {err}") from err
    table = {}
    for name, record in results.models.items():
        row: dict[str, float | None] = {"clean": record.clean_accuracy}
        for attack, curve in record.attacks.items():
            row[curve.label or attack] = curve.accuracy_at(results.table_eps)
        table[name] = row
    facts = {"table_eps": results.table_eps, "n_samples": results.n_samples, "dataset": results.dataset}
    return table, facts


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def model_card(config_json: dict, provenance: dict | None, accuracies: dict, facts: dict, ckpt: str) -> str:
    """The README.md of an export folder (Hugging Face model-card front matter, then the card)."""
    recipe = config_json["recipe"]
    meta = (recipe["dataset"] or {}).get("meta") or {}
    method = recipe["method"]
    dataset = recipe["dataset"].get("name") or "?"
    front = [
        "---",
        "library_name: afd-lightning",
        "license: mit",
        "tags:",
        "- adversarial-robustness",
        "- image-classification",
        f"- {method.lower()}",
        f"datasets: [{dataset}]",
        "---",
        "",
    ]
    lines = [
        f"# {method} on {dataset} ({config_json['model']['_target_'].rsplit('.', 1)[-1]})",
        "",
        "Exported from an afd-lightning checkpoint with `afd-export`. Load it without running code from the folder:",
        "",
        "```python",
        "import afd_lightning",
        "",
        'model = afd_lightning.load_classifier("path/to/this/folder")  # eval mode; images in [0, 1], NCHW -> logits',
        "```",
        "",
        "## Method",
        "",
        f"{method}: {PAPERS.get(method, 'see the method config below')}.",
        "",
        "## Recipe",
        "",
        f"- dataset: {dataset} ({meta.get('channels', '?')}x{meta.get('image_size', '?')}x{meta.get('image_size', '?')}, "
        f"{meta.get('num_classes', '?')} classes), seed {recipe.get('seed')}",
        f"- epochs: {recipe.get('max_epochs')}, precision {recipe.get('precision')}, batch size "
        f"{recipe['dataset'].get('batch_size')}",
        f"- training attack: {(recipe.get('attack') or {}).get('name', 'none')}"
        + (
            f" (ε {recipe['attack'].get('eps')}, {recipe['attack'].get('steps')} steps)"
            if isinstance(recipe.get("attack"), dict)
            else ""
        ),
        f"- network: `{config_json['model']['_target_']}`, embedding size {config_json.get('embed_dim')}",
        "- the full method config and network config are in `config.json`",
        "",
        "## Threat model",
        "",
        f"L∞ ε = {meta.get('eps')} (L2 {meta.get('eps_l2')}, L1 {meta.get('eps_l1')}) on images in [0, 1]; "
        "input normalisation, if any, is inside the network.",
        "",
        "## Training time",
        "",
    ]
    if provenance and provenance.get("wall_s") is not None:
        lines.append(
            f"{provenance['wall_s']:.0f} s on {provenance.get('device', '?')} with {provenance.get('threads', '?')} "
            "thread(s)."
        )
    else:
        lines.append("Not recorded in the checkpoint.")
    lines += ["", "## Robust accuracy", ""]
    if accuracies:
        for name, row in accuracies.items():
            columns = list(row)
            lines += [
                f"{name}: accuracy (%) on {facts.get('n_samples')} test images at ε = {facts.get('table_eps')}:",
                "",
                "| " + " | ".join(columns) + " |",
                "|" + "---|" * len(columns),
                "| " + " | ".join(_pct(row[c]) for c in columns) + " |",
                "",
            ]
    else:
        lines += ["No evaluation was given (`afd-export ... --results <eval dir>/results.json` adds it).", ""]
    lines += ["## Provenance", ""]
    if provenance:
        code = provenance.get("commit") or f"afd-lightning {provenance.get('version')}"
        lines += [
            f"- code: {code}{'+dirty' if provenance.get('dirty') else ''}",
            f"- command: `{provenance.get('command', '?')}`",
            f"- started: {provenance.get('started', '?')}",
            f"- versions: {', '.join(f'{k} {v}' for k, v in sorted((provenance.get('versions') or {}).items()))}",
        ]
    lines += [f"- exported from: `{Path(ckpt).name}` by afd-export (format {FORMAT} {FORMAT_VERSION})", ""]
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
    return "\n".join(front + lines)


def export(ckpt, out_dir, results=None, trust=(), overwrite: bool = False) -> Path:
    """Write ``model.safetensors``, ``config.json`` and ``README.md`` for checkpoint ``ckpt`` into ``out_dir``."""
    from safetensors.torch import save_file

    from afd_lightning.checkpoints import classifier_from, load_checkpoint
    from afd_lightning.run_config import from_checkpoint
    from afd_lightning.stored_config import check_slot

    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not overwrite)):
        raise ExportError(f"{out} exists and is not an empty folder: pick a new one (or --overwrite)")
    checkpoint = load_checkpoint(ckpt)
    config = from_checkpoint(checkpoint, ckpt)
    model = classifier_from(checkpoint, ckpt, trust=trust)
    net = cast("RobustClassifier", model)  # check_network verified the members when it was built
    model_cfg = check_slot(config.get("model"), "model", f"checkpoint {ckpt}", "model", trust=tuple(trust))
    accuracies, facts = _accuracies(Path(results) if results else None)
    meta = (config.get("dataset") or {}).get("meta") or {}
    config_json = _json_plain(
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": model_cfg,
            "num_classes": int(net.num_classes),
            "embed_dim": int(net.embed_dim),
            "input": {
                "range": [0.0, 1.0],
                "channels": meta.get("channels"),
                "image_size": meta.get("image_size"),
                "layout": "NCHW",
            },
            "recipe": _recipe(config),
        },
        f"the run config of {ckpt}",
    )
    meta_block = checkpoint.get("afd_lightning") or {}
    provenance = meta_block.get("provenance") if isinstance(meta_block.get("provenance"), dict) else None
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out / WEIGHTS), metadata={"format": "pt", "producer": FORMAT})
    (out / CONFIG).write_text(json.dumps(config_json, indent=2, sort_keys=True) + "\n")
    (out / CARD).write_text(model_card(config_json, provenance, accuracies, facts, str(ckpt)))
    if results:
        (out / RESULTS).write_text(Path(results).read_text())
    return out


# --------------------------------------------------------------------------- reading


def is_export(path) -> bool:
    """A folder with this module's ``config.json`` (what :func:`afd_lightning.load_classifier` dispatches on)."""
    path = Path(path)
    return path.is_dir() and (path / CONFIG).is_file()


def _check_files(folder: Path) -> None:
    for f in sorted(folder.iterdir()):
        if f.is_symlink() or not f.is_file():
            raise ExportError(f"{folder}: {f.name} is not a plain file; an export folder holds files only")
        with open(f, "rb") as handle:
            head = handle.read(4)
        if f.name not in ALLOWED_FILES or head.startswith(_PICKLE_OR_TORCH):
            raise ExportError(
                f"{folder}: {f.name} is not one of the files afd-export writes ({', '.join(sorted(ALLOWED_FILES))})"
                + (
                    " and it is a pickle or torch.save archive, which can run code when loaded"
                    if head.startswith(_PICKLE_OR_TORCH)
                    else ""
                )
                + ". Nothing was loaded; remove it, or export the checkpoint again."
            )


def load_export(folder, map_location="cpu", trust=(), model=None):
    """The network of an :func:`export` folder with its weights, in eval mode. No pickle is read.

    ``trust``: module prefixes of your own package whose networks ``config.json`` may name (from you, never
    the file). ``model``: a network you built; the weights are loaded into it and nothing is built.
    """
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from afd_lightning.checkpoints import describe_mismatch, network_to_load

    folder = Path(folder)
    _check_files(folder)
    where = f"export folder {folder}"
    if (folder / CONFIG).stat().st_size > MAX_CONFIG_BYTES:
        raise ExportError(f"{where}: config.json is larger than {MAX_CONFIG_BYTES:,} bytes")
    try:
        config = json.loads((folder / CONFIG).read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise ExportError(f"{where}: config.json is not valid JSON ({err})") from err
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ExportError(f"{where}: config.json was not written by afd-export (no format {FORMAT!r})")
    if config.get("format_version") != FORMAT_VERSION:
        raise ExportError(
            f"{where}: format version {config.get('format_version')!r}, this package reads {FORMAT_VERSION}"
        )
    model, described = network_to_load(model, config.get("model"), f"{where} (config.json)", "config.json", trust)
    if not (folder / WEIGHTS).is_file():
        raise ExportError(f"{where}: {WEIGHTS} is missing")
    try:
        state = load_file(str(folder / WEIGHTS), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise ExportError(f"{where}: {WEIGHTS} is not a readable safetensors file ({err})") from err
    mismatch = describe_mismatch(model, state)
    if mismatch:
        raise ExportError(f"{where}: {WEIGHTS} does not match {described}: {mismatch}")
    model.load_state_dict(state)
    return model.to(map_location if isinstance(map_location, (str, torch.device)) else "cpu").eval()


# --------------------------------------------------------------------------- command line


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="afd-export",
        description="Write a checkpoint as a model folder (model.safetensors, config.json, README.md model card) "
        "that afd_lightning.load_classifier(<dir>) and the Hugging Face hub read without pickle.",
    )
    parser.add_argument("ckpt", help="a checkpoint of ours, e.g. <run dir>/checkpoints/last.ckpt")
    parser.add_argument("out_dir", help="the folder to write (new or empty)")
    parser.add_argument("--results", help="an evaluation's results.json: its accuracies go into the model card")
    parser.add_argument("--trust", action="append", default=[], help="module prefix of your own networks (repeatable)")
    parser.add_argument("--overwrite", action="store_true", help="write into a folder that is not empty")
    args = parser.parse_args(argv)
    try:
        out = export(args.ckpt, args.out_dir, results=args.results, trust=args.trust, overwrite=args.overwrite)
    except AFDUserError as err:
        raise SystemExit(f"error: {err}") from None
    print(f"exported {args.ckpt} -> {out} ({', '.join(sorted(p.name for p in out.iterdir()))})")


if __name__ == "__main__":
    main()
