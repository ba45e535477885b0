"""Reading our checkpoints safely: tensors and plain containers only, never code from the file."""
from __future__ import annotations

import collections
import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

from afd_lightning.errors import AFDUserError

# Besides tensors and plain containers, Lightning checkpoints of ours hold MultiStepLR's
# milestone Counter; nothing else may be unpickled.
SAFE_GLOBALS = [collections.Counter]


class CheckpointError(AFDUserError):
    """A checkpoint that is missing, corrupt, unsafe, or not from this package."""


def load_checkpoint(path, map_location="cpu") -> dict:
    """``torch.load`` with ``weights_only=True`` and a short allow-list, with clear errors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (pass the path of a .ckpt file, e.g. <run dir>/checkpoints/last.ckpt)")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"checkpoint {path} contains objects other than tensors and plain data, so it was not loaded "
            f"(loading it could run code from the file). Details: {str(err).splitlines()[0]}"
        ) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated and cannot be read ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else 'no details'}). Use another checkpoint, e.g. last.ckpt or best.ckpt."
        ) from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"checkpoint {path} has no state_dict: it is not a Lightning checkpoint")
    return checkpoint


def run_config(checkpoint: dict, path="checkpoint") -> dict:
    meta = checkpoint.get("afd_lightning")
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
        raise CheckpointError(f"{path} was not written by afd-lightning's train.py (no stored run config)")
    return meta["config"]


def load_classifier(path, map_location="cpu") -> nn.Module:
    """Rebuild the run's network from the stored config and load its weights; returns it in eval mode."""
    from hydra.utils import instantiate

    checkpoint = load_checkpoint(path, map_location)
    config = run_config(checkpoint, path)
    model = instantiate(config["model"])
    prefix = "model."
    state = {k[len(prefix):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(
            f"checkpoint {path} does not match the network its config describes "
            f"({config['model'].get('_target_')}): {str(err).splitlines()[0]}"
        ) from err
    return model.to(map_location if isinstance(map_location, (str, torch.device)) else "cpu").eval()
