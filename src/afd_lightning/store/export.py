"""Reading an ``afd-export`` folder: JSON and safetensors only, the network built from the checked config.

The folder is written by :mod:`afd_lightning.share.export`; the file names and the format version are
defined here, where they are checked. Both files are read once through :mod:`afd_lightning.files.reader`
(regular files, size caps; ``config.json`` with depth and node bounds). The network is sized from
``config.json`` before it is built (:mod:`afd_lightning.store.build`), and ``model.safetensors`` must hold
exactly the network's tensors, each with the network's own shape and dtype: the export writes what the network
declares (float32 here), so float64, unsigned or other dtypes are refused rather than cast.
"""

from __future__ import annotations

from pathlib import Path

from afd_lightning.errors import AFDUserError
from afd_lightning.files.reader import UnreadableFileError, read_bytes, read_head, read_json
from afd_lightning.store.build import MAX_PARAMETERS
from afd_lightning.store.checkpoint import check_expected, describe_mismatch, network_to_load

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
CARD = "README.md"
RESULTS = "results.json"
FORMAT = "afd-lightning-export"
FORMAT_VERSION = 1
# Files a folder of ours may hold; anything else (a pytorch_model.bin, a .ckpt, a pickle) is refused.
ALLOWED_FILES = {WEIGHTS, CONFIG, CARD, RESULTS, ".gitattributes"}
MAX_CONFIG_BYTES = 1_000_000
# The weights of the largest network a stored config may describe (MAX_PARAMETERS float32 values) and a header.
MAX_WEIGHTS_BYTES = 4 * MAX_PARAMETERS + (16 << 20)
_PICKLE_OR_TORCH = (b"\x80", b"PK\x03\x04")  # pickle protocol >= 2, torch.save's zip archive


class ExportError(AFDUserError):
    """An export folder that cannot be written or read safely."""


def is_export(path) -> bool:
    """A folder with this module's ``config.json`` (what :func:`afd_lightning.load_classifier` dispatches on)."""
    path = Path(path)
    return path.is_dir() and (path / CONFIG).is_file()


def _check_files(folder: Path) -> None:
    for f in sorted(folder.iterdir()):
        if f.is_symlink() or not f.is_file():
            raise ExportError(f"{folder}: {f.name} is not a plain file; an export folder holds files only")
        head = read_head(f, 4, what="export file")
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


def load_export(folder, map_location="cpu", trust=(), model=None, expect_dataset=None, expect_model=None):
    """The network of an ``afd-export`` folder (:func:`afd_lightning.share.export.export`) with its weights, in eval mode. No pickle is read.

    ``trust``: module prefixes of your own package whose networks ``config.json`` may name (from you, never
    the file). ``model``: a network you built; the weights are loaded into it and nothing is built.
    ``expect_dataset`` / ``expect_model``: as for a checkpoint (:func:`~afd_lightning.store.checkpoint.check_expected`),
    against the dataset and network ``config.json`` records; checked before anything is built.
    """
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load as load_safetensors

    folder = Path(folder)
    _check_files(folder)
    where = f"export folder {folder}"
    try:
        config = read_json(folder / CONFIG, max_bytes=MAX_CONFIG_BYTES, what=f"{where}:")
    except UnreadableFileError as err:
        raise ExportError(str(err)) from err
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ExportError(f"{where}: config.json was not written by afd-export (no format {FORMAT!r})")
    if config.get("format_version") != FORMAT_VERSION:
        raise ExportError(
            f"{where}: format version {str(config.get('format_version'))[:40]!r}, this package reads {FORMAT_VERSION}"
        )
    recipe = config.get("recipe") if isinstance(config.get("recipe"), dict) else {}
    dataset = recipe.get("dataset") if isinstance(recipe.get("dataset"), dict) else {}
    stored = {"dataset": {"meta": {"name": dataset.get("name")}}, "model": config.get("model")}
    check_expected(stored, folder, expect_dataset, expect_model, what="export folder")
    model, described = network_to_load(model, config.get("model"), f"{where} (config.json)", "config.json", trust)
    if not (folder / WEIGHTS).is_file():
        raise ExportError(f"{where}: {WEIGHTS} is missing")
    try:
        state = load_safetensors(read_bytes(folder / WEIGHTS, MAX_WEIGHTS_BYTES, what=f"{where}: {WEIGHTS}"))
    except UnreadableFileError as err:
        raise ExportError(str(err)) from err
    except (SafetensorError, OSError, ValueError) as err:
        raise ExportError(f"{where}: {WEIGHTS} is not a readable safetensors file ({err})") from err
    mismatch = describe_mismatch(model, state)
    if mismatch:
        raise ExportError(f"{where}: {WEIGHTS} does not match {described}: {mismatch}")
    wrong = [
        f"{name} is {str(state[name].dtype).removeprefix('torch.')}, the network's is {str(tensor.dtype).removeprefix('torch.')}"
        for name, tensor in model.state_dict().items()
        if state[name].dtype != tensor.dtype
    ]
    if wrong:
        more = f" and {len(wrong) - 3} more" if len(wrong) > 3 else ""
        raise ExportError(
            f"{where}: {WEIGHTS} holds tensors of other dtypes than {described} declares ({'; '.join(wrong[:3])}{more}); "
            "afd-export writes the network's own dtypes, so the file was refused rather than cast"
        )
    model.load_state_dict(state)
    return model.to(map_location if isinstance(map_location, (str, torch.device)) else "cpu").eval()
