"""``afd-export <ckpt> <dir>``: a model folder anyone can load without running code from it.

The folder follows the Hugging Face hub's conventions, so uploading it publishes a usable model:

* ``model.safetensors``: the weights of the encoder E and the category decoder Dc (no pickle; AFD's
  adversarial decoder Da and the optimizer state are training-only and left out);
* ``config.json``: the network's config (checked against the allow-list of
  :mod:`afd_lightning.store.stored_config`), the input convention and the training recipe;
* ``README.md``: the model card (method, recipe, dataset, threat model, training time, accuracies from
  an evaluation's ``results.json`` when one is given, provenance, licence, citation).

``afd_lightning.load_classifier(<dir>)`` (:func:`afd_lightning.store.export.load_export`) reads it back: JSON and safetensors only,
and the network is built from the checked config exactly as from a checkpoint's.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from afd_lightning.errors import AFDUserError
from afd_lightning.files.reader import read_bytes
from afd_lightning.files.writer import refuse_symlinked_folders, write_bytes_atomic
from afd_lightning.share.card import accuracies as card_accuracies
from afd_lightning.share.card import model_card
from afd_lightning.store.export import CARD, CONFIG, FORMAT, FORMAT_VERSION, RESULTS, WEIGHTS, ExportError

if TYPE_CHECKING:
    from afd_lightning.nets.protocol import RobustClassifier

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


def export(ckpt, out_dir, results=None, trust=(), overwrite: bool = False) -> Path:
    """Write ``model.safetensors``, ``config.json`` and ``README.md`` for checkpoint ``ckpt`` into ``out_dir``."""
    from safetensors.torch import save

    from afd_lightning.config.run_config import from_checkpoint
    from afd_lightning.store.checkpoint import classifier_from, load_checkpoint
    from afd_lightning.store.stored_config import check_slot

    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not overwrite)):
        raise ExportError(f"{out} exists and is not an empty folder: pick a new one (or --overwrite)")
    checkpoint = load_checkpoint(ckpt)
    config = from_checkpoint(checkpoint, ckpt)
    model = classifier_from(checkpoint, ckpt, trust=trust)
    net = cast("RobustClassifier", model)  # check_network verified the members when it was built
    model_cfg = check_slot(config.get("model"), "model", f"checkpoint {ckpt}", "model", trust=tuple(trust))
    accuracies, facts = card_accuracies(Path(results) if results else None)
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
    # Everything is made in memory first: a refusal (a results file, a card value) leaves no file behind.
    files = {
        WEIGHTS: save(state, metadata={"format": "pt", "producer": FORMAT}),
        CONFIG: (json.dumps(config_json, indent=2, sort_keys=True) + "\n").encode(),
        CARD: model_card(config_json, provenance, accuracies, facts, str(ckpt)).encode(),
    }
    if results:
        files[RESULTS] = read_bytes(results, what="--results")
    out.mkdir(parents=True, exist_ok=True)
    refuse_symlinked_folders(out)
    for name, data in files.items():  # the process umask's mode (0644 under 0022): a colleague can read them
        write_bytes_atomic(out / name, data)
    return out


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
