"""Reading our checkpoints safely: read once, verified in memory, tensors and plain containers only, never code.

:func:`load_checkpoint` reads the file's bytes once (a regular file, at most :data:`MAX_CHECKPOINT_BYTES`),
checks the zip archive they hold (member sizes against the tensor metadata, every CRC) and hands *those bytes*
to ``torch.load(weights_only=True)``: the file is never opened again, so a file swapped on disk after the checks
is never read. The loaded dict is then checked for shape (:func:`check_checkpoint`): bounded nesting, a
``state_dict`` of tensors, config blocks that are mappings, every refusal naming the key.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from afd_lightning.config import run_config
from afd_lightning.errors import CheckpointError
from afd_lightning.files.reader import UnreadableFileError, read_bytes
from afd_lightning.store.build import MAX_PARAMETERS
from afd_lightning.store.plain import MAX_DEPTH, UnsafeConfigError, check_tree, shown
from afd_lightning.store.stored_config import build_stored_model

# Besides tensors and plain containers, Lightning checkpoints of ours hold MultiStepLR's
# milestone Counter; nothing else may be unpickled.
SAFE_GLOBALS: list[Any] = [collections.Counter]


# Weights, and up to three optimizer slots each (Adam's two moments, AFD's three optimizers), of the largest network
# a stored config may describe (afd_lightning.store.build.MAX_PARAMETERS, 4 bytes each), plus room for the rest.
MAX_CHECKPOINT_BYTES = 4 * 4 * MAX_PARAMETERS + (64 << 20)


def _is_zip_archive(data: bytes) -> bool:
    """A zip archive both where torch.load looks (local header at the start) and where zipfile looks (directory at the end)."""
    return data[:4] == b"PK\x03\x04" and zipfile.is_zipfile(io.BytesIO(data))


def read_checkpoint_bytes(path) -> tuple[Path, bytes]:
    """(path, bytes) of the checkpoint file ``path`` names, read once: a regular file, at most
    :data:`MAX_CHECKPOINT_BYTES`. A link the caller named is resolved first (a ``last.ckpt`` may be one);
    the file it resolves to is opened without following links (:func:`afd_lightning.files.reader.read_bytes`)."""
    path = refuse_directory(path)
    resolved = Path(path).resolve()
    if not resolved.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist (pass the path of a .ckpt file, e.g. <run dir>/checkpoints/last.ckpt)"
        )
    try:
        return path, read_bytes(resolved, MAX_CHECKPOINT_BYTES, what="checkpoint")
    except UnreadableFileError as err:
        raise CheckpointError(str(err)) from err


# --------------------------------------------------------------------------- bounds before torch.load

# Bytes per element of the storage types torch.save names in its pickle.
_ELEMENT_SIZE = {
    "DoubleStorage": 8,
    "FloatStorage": 4,
    "HalfStorage": 2,
    "BFloat16Storage": 2,
    "LongStorage": 8,
    "IntStorage": 4,
    "ShortStorage": 2,
    "CharStorage": 1,
    "ByteStorage": 1,
    "BoolStorage": 1,
    "ComplexFloatStorage": 8,
    "ComplexDoubleStorage": 16,
    "UntypedStorage": 1,
}
# The small bookkeeping members of torch's zip format (version, byteorder, serialization id...).
SMALL_MEMBER_BYTES = 4096
# Uncompressed, all members together, at most this multiple of the file's size plus a margin: torch.save
# stores members uncompressed, so a genuine file declares about its own size.
SIZE_FACTOR, SIZE_MARGIN = 2, 1 << 20


class _Stub:
    """Stands in for every class a checkpoint's pickle names while its storages are counted: nothing is imported."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass

    def __setitem__(self, key, value):
        pass

    def append(self, value):
        pass

    def extend(self, values):
        pass


class _StorageScanner(pickle.Unpickler):
    """Reads a checkpoint's ``data.pkl`` only to learn each storage's size: classes are stubs, nothing runs."""

    def __init__(self, file) -> None:
        super().__init__(file)
        self.storages: dict[str, int] = {}
        self.problem: str | None = None

    def find_class(self, module, name):
        return type(str(name), (_Stub,), {"storage_name": str(name)})

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            self.problem = f"an unknown persistent id {str(pid)[:80]}"
            return None
        storage_type, key, numel = pid[1], str(pid[2]), pid[4]
        size = _ELEMENT_SIZE.get(getattr(storage_type, "storage_name", ""))
        if size is None or not isinstance(numel, int) or numel < 0:
            self.problem = f"storage {key} of an unknown type or size"
            return None
        self.storages[key] = max(self.storages.get(key, 0), numel * size)
        return None


def _check_sizes(path: Path, data: bytes) -> None:
    """Refuse a zip member that declares more bytes than its tensor metadata implies, or too many bytes in all.

    Runs on the bytes read, before any member is decompressed (the CRC check) and before ``torch.load``.
    """
    file_size = len(data)
    cap = SIZE_FACTOR * file_size + SIZE_MARGIN
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
            total = sum(m.file_size for m in members)
            if total > cap:
                raise CheckpointError(
                    f"checkpoint {path} declares {total:,} bytes uncompressed in a {file_size:,}-byte file, more than "
                    f"the limit of {SIZE_FACTOR} x its size + {SIZE_MARGIN:,} bytes (torch.save does not compress), "
                    "so it was not loaded"
                )
            pickles = [m for m in members if m.filename.endswith("/data.pkl")]
            if len(pickles) != 1:
                raise CheckpointError(
                    f"checkpoint {path} holds {len(pickles)} data.pkl members, not one: not a torch.save file"
                )
            root = pickles[0].filename[: -len("data.pkl")]
            scanner = _StorageScanner(archive.open(pickles[0]))
            try:
                scanner.load()
            except (
                pickle.UnpicklingError,
                EOFError,
                ValueError,
                TypeError,
                AttributeError,
                IndexError,
                KeyError,
            ) as err:
                raise CheckpointError(
                    f"checkpoint {path}: its data.pkl cannot be read ({type(err).__name__}: {err})"
                ) from err
            if scanner.problem:
                raise CheckpointError(f"checkpoint {path}: its data.pkl names {scanner.problem}, so it was not loaded")
            for member in members:
                name = member.filename
                if name == pickles[0].filename:
                    continue
                if name.startswith(root + "data/"):
                    implied = scanner.storages.get(name[len(root + "data/") :], 0)
                    if member.file_size > implied:
                        raise CheckpointError(
                            f"checkpoint {path}: member {name!r} declares {member.file_size:,} bytes but its tensor "
                            f"metadata implies {implied:,}, so it was not loaded (the file was crafted or damaged)"
                        )
                elif member.file_size > SMALL_MEMBER_BYTES:
                    raise CheckpointError(
                        f"checkpoint {path}: member {name!r} declares {member.file_size:,} bytes, more than the "
                        f"{SMALL_MEMBER_BYTES} of a bookkeeping member, so it was not loaded"
                    )
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as err:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated and cannot be read ({type(err).__name__}: {err}). "
            "Use another checkpoint, e.g. last.ckpt or best.ckpt."
        ) from err


def _verify_crcs(path: Path, data: bytes) -> None:
    """Every member's CRC-32 (torch.load does not check them, so overwritten tensor bytes would load silently)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as err:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated and cannot be read ({type(err).__name__}: {err}). "
            "Use another checkpoint, e.g. last.ckpt or best.ckpt."
        ) from err
    if bad is not None:
        raise CheckpointError(
            f"checkpoint {path} is corrupt: the CRC check of its member {bad!r} failed (the file was damaged "
            "after it was written, e.g. on disk or in transfer), so it was not loaded. Use another checkpoint, "
            "e.g. last.ckpt or best.ckpt, or copy the file again."
        )


def refuse_directory(path, label: str | None = None) -> Path:
    """``path`` as a Path, or a clear error when it is a directory, naming the checkpoint files inside it."""
    path = Path(path)
    if path.is_dir():
        inside = sorted(path.glob("checkpoints/*.ckpt")) + sorted(path.glob("*.ckpt"))
        inside.sort(key=lambda f: f.name != "last.ckpt")  # the usual choice first
        examples = " or ".join(str(f) for f in inside[:3] or [path / "checkpoints" / "last.ckpt"])
        raise CheckpointError(
            f"{label or f'checkpoint {path}'} is a directory; pass a .ckpt file in it, e.g. {examples}"
        )
    return path


def load_checkpoint(path, map_location="cpu") -> dict:
    """The checkpoint ``path`` names, read once and verified in memory (see the module doc), with clear errors.

    ``torch.load`` with ``weights_only=True`` and a short allow-list runs on the very bytes whose sizes and CRCs
    were checked; the result is checked for shape (:func:`check_checkpoint`).
    """
    path, data = read_checkpoint_bytes(path)
    if not _is_zip_archive(data):  # torch.save writes a zip archive; anything else is damaged or foreign
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({len(data)} bytes, not the zip archive torch.save writes), "
            "so it cannot be read. Use another checkpoint, e.g. last.ckpt or best.ckpt."
        )
    _check_sizes(path, data)  # before anything is decompressed
    _verify_crcs(path, data)
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            checkpoint = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"checkpoint {path} contains objects other than tensors and plain data, so it was not loaded "
            f"(loading it could run code from the file). Details: {str(err).splitlines()[0]}"
        ) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, RecursionError) as err:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated and cannot be read ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else 'no details'}). Use another checkpoint, e.g. last.ckpt or best.ckpt."
        ) from err
    del data
    check_checkpoint(checkpoint, path)
    return checkpoint


# The blocks of a stored run config that loaders read as mappings, and the dataset's meta block inside it.
CONFIG_BLOCKS = ("model", "dataset", "method", "attack", "eval_attack", "trainer", "paths", "callbacks", "logger")


def _mapping_or_none(value, key: str, where: str) -> None:
    if value is not None and not isinstance(value, Mapping):
        raise CheckpointError(f"{where}: {key} is a {type(value).__name__}, not a mapping, so the file was refused")


def check_checkpoint(checkpoint, path) -> None:
    """Refuse a loaded checkpoint whose parts have the wrong shape, naming the key (one line, never a traceback).

    Bounded nesting (:data:`~afd_lightning.store.plain.MAX_DEPTH`, an iterative walk); ``state_dict`` maps
    names to tensors; ``hyper_parameters``, ``afd_lightning`` and its ``config``/``provenance`` are mappings;
    the stored run config's blocks are mappings and ``dataset.meta.name`` a string; Lightning's ``epoch`` and
    ``global_step`` are non-negative integers. What a resume reads besides is checked against the run being
    resumed (:func:`afd_lightning.store.resume.check_resume_state`).
    """
    where = f"checkpoint {path}"
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{where} holds a {type(checkpoint).__name__}, not a Lightning checkpoint")
    try:
        check_tree(checkpoint, where, MAX_DEPTH)
    except UnsafeConfigError as err:
        raise CheckpointError(str(err)) from err
    state = checkpoint.get("state_dict")
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{where} has no state_dict mapping: it is not a Lightning checkpoint")
    for key, value in state.items():
        if not isinstance(key, str) or not torch.is_tensor(value):
            raise CheckpointError(
                f"{where}: state_dict[{shown(repr(key), 80)}] is a {type(value).__name__}, not a named tensor, so the "
                "file was refused"
            )
    version = checkpoint.get("pytorch-lightning_version", "")
    if not isinstance(version, str) or len(version) > 40:
        raise CheckpointError(f"{where}: pytorch-lightning_version={str(version)[:40]!r} is not a version string")
    for key in ("epoch", "global_step"):
        value = checkpoint.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise CheckpointError(f"{where}: {key}={str(value)[:80]!r} is not a non-negative integer")
    _mapping_or_none(checkpoint.get("hyper_parameters"), "hyper_parameters", where)
    meta = checkpoint.get("afd_lightning")
    _mapping_or_none(meta, "afd_lightning", where)
    if isinstance(meta, Mapping):
        for key in ("config", "provenance"):
            _mapping_or_none(meta.get(key), f"afd_lightning.{key}", where)
        for key in ("method", "wandb_run_id"):
            if meta.get(key) is not None and not isinstance(meta.get(key), str):
                raise CheckpointError(f"{where}: afd_lightning.{key} is not a string")
    for name, config in (
        ("hyper_parameters", checkpoint.get("hyper_parameters")),
        ("afd_lightning.config", (meta or {}).get("config")),
    ):
        if not isinstance(config, Mapping):
            continue
        for block in CONFIG_BLOCKS:
            _mapping_or_none(config.get(block), f"{name}.{block}", where)
        dataset = config.get("dataset")
        if isinstance(dataset, Mapping):
            _mapping_or_none(dataset.get("meta"), f"{name}.dataset.meta", where)
            dataset_meta = dataset.get("meta")
            if isinstance(dataset_meta, Mapping) and not isinstance(dataset_meta.get("name", ""), str):
                raise CheckpointError(f"{where}: {name}.dataset.meta.name is not a string")


def check_expected(
    config: dict, path, expect_dataset: str | None = None, expect_model=None, what: str = "checkpoint"
) -> None:
    """Refuse a checkpoint trained on another dataset or with another network than the caller expects.

    ``expect_dataset``: a dataset name (``digits``, ``mnist``, ``cifar10``, ``cifar100``).
    ``expect_model``: a model config (a mapping with ``_target_``, e.g. ``cfg.model``), whose
    entries must all equal the stored ones, or a ``_target_`` string, full or its last part
    (``afd_lightning.nets.resnet18`` or ``resnet18``).
    """
    if expect_dataset is not None:
        found = (config.get("dataset") or {}).get("meta", {}).get("name")
        if found != expect_dataset:
            raise CheckpointError(
                f"{what} {path} was trained on dataset {found!r}, not {expect_dataset!r}: "
                f"pick one trained on {expect_dataset} (or dataset={found})"
            )
    if expect_model is None:
        return
    stored = config.get("model") or {}
    if isinstance(expect_model, str):
        target = str(stored.get("_target_"))
        if expect_model not in (target, target.rsplit(".", 1)[-1]):
            raise CheckpointError(f"{what} {path} holds a {target} network, not {expect_model}")
        return
    from omegaconf import DictConfig, OmegaConf

    if isinstance(expect_model, DictConfig):
        expect_model = OmegaConf.to_container(expect_model, resolve=True)
    differ = run_config.model_differences(stored, dict(expect_model))  # less how the network runs
    if differ:
        details = "; ".join(f"{k}: checkpoint {a!r}, expected {b!r}" for k, (a, b) in sorted(differ.items()))
        raise CheckpointError(f"{what} {path} holds another network than expected ({details})")


def describe_mismatch(model: nn.Module, state: dict) -> str:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and torch.is_tensor(state[k]) and state[k].shape != v.shape
    ]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape (stored vs network)", shapes)):
        if items:
            more = f" and {len(items) - 3} more" if len(items) > 3 else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:3])}{more}")
    return "; ".join(parts)


def network_to_load(
    model: nn.Module | None, model_config, where: str, config_name: str, trust=()
) -> tuple[nn.Module, str]:
    """The network the weights go into, and how errors name it.

    ``model``: the network you passed (``load_classifier(model=...)``); None builds the one the stored
    ``model_config`` describes (``where`` and ``config_name`` say which file it came from).
    """
    if model is None:
        built = build_stored_model(model_config, where, trust=trust)
        return built, f"the network {config_name} describes ({model_config.get('_target_')})"
    if not isinstance(model, nn.Module):
        raise TypeError(f"load_classifier(model=...) takes an nn.Module you built, not {type(model).__name__}")
    return model, f"the network you passed ({type(model).__name__})"


def classifier_from(
    checkpoint: dict,
    path,
    map_location="cpu",
    expect_dataset: str | None = None,
    expect_model=None,
    trust=(),
    model: nn.Module | None = None,
) -> nn.Module:
    """:func:`load_classifier` from a checkpoint already read by :func:`load_checkpoint` (read and verified once)."""
    config = run_config.from_checkpoint(checkpoint, path)
    check_expected(config, path, expect_dataset, expect_model)
    model, described = network_to_load(model, config.get("model"), f"checkpoint {path}", "its config", trust)
    prefix = "model."
    state = {k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    mismatch = describe_mismatch(model, state)
    if mismatch:
        raise CheckpointError(f"checkpoint {path} does not match {described}: {mismatch}")
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint {path} does not match {described}: {str(err).splitlines()[0]}") from err
    return model.to(map_location if isinstance(map_location, (str, torch.device)) else "cpu").eval()
