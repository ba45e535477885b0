"""Hydra, in the test processes, parses each config file once instead of once per compose.

A compose reads and parses every YAML file of its defaults list (about 30 for ``train``), and the suite composes
hundreds of times: the YAML parser and OmegaConf's node building were about a third of each compose's time
(cProfile of tests/conf/test_config_tree.py). ``install()`` wraps the two sources that read files, Hydra's
``file://`` (our ``conf/``, and any folder a test writes) and ``pkg://`` (Hydra's own configs), so that a
file's parsed config is kept and every later load gets a deep copy of it: Hydra merges and edits what a
source returns, and a copy keeps the kept one as it was parsed.

``compose(conf, name, overrides)`` also keeps each whole composition of the package's own config roots
(``conf/train``, ``conf/eval``, which no test writes to), keyed by the overrides, and hands out deep copies: the
suite composes the same few override lists many times (tests/helpers/compose.py and evaluation.py use it).

The key of a ``file://`` config holds the file's bytes, so a test that rewrites a YAML file gets the new
contents; a ``pkg://`` config is a file of an installed package, which does not change while tests run. A file
that fails to load is not kept: its error is raised on every load. Only the test processes install this;
the commands they run (``tests/helpers/zygote.py``, subprocesses) read their configs as users' runs do.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra._internal.core_plugins.file_config_source import FileConfigSource
from hydra._internal.core_plugins.importlib_resources_config_source import ImportlibResourcesConfigSource
from hydra._internal.sources_registry import SourcesRegistry
from hydra.core.plugins import Plugins
from hydra.plugins.config_source import ConfigResult
from omegaconf import DictConfig

_MAX_BYTES = 1 << 20  # a config larger than this is read by Hydra each time, not kept

_installed: dict[type, Callable[..., ConfigResult]] = {}
_kept: dict[tuple[Any, ...], ConfigResult] = {}
_composed: dict[tuple[Any, ...], DictConfig] = {}
stats = {"hits": 0, "misses": 0, "composed_hits": 0}


def _copy(result: ConfigResult) -> ConfigResult:
    return ConfigResult(
        provider=result.provider,
        path=result.path,
        config=copy.deepcopy(result.config),
        header=dict(result.header),
        defaults_list=None,
        is_schema_source=result.is_schema_source,
    )


def _file_key(source: FileConfigSource, config_path: str) -> tuple[Any, ...] | None:
    """The file's path and bytes, or None where Hydra should load it itself (missing, too big, unreadable)."""
    full_path = os.path.realpath(os.path.join(source.path, source._normalize_file_name(config_path)))
    try:
        with open(full_path, "rb") as f:
            data = f.read(_MAX_BYTES + 1)
    except OSError:
        return None
    if len(data) > _MAX_BYTES:
        return None
    return ("file", source.path, config_path, full_path, data)


def _pkg_key(source: ImportlibResourcesConfigSource, config_path: str) -> tuple[Any, ...]:
    return ("pkg", source.path, config_path)


def _wrap(cls: type, key_of: Callable[[Any, str], tuple[Any, ...] | None]) -> None:
    original = cls.load_config  # type: ignore[attr-defined]
    _installed[cls] = original

    def load_config(self, config_path: str) -> ConfigResult:
        key = key_of(self, config_path)
        if key is None:
            return original(self, config_path)
        kept = _kept.get(key)
        if kept is None:
            stats["misses"] += 1
            kept = _kept[key] = _copy(original(self, config_path))
        else:
            stats["hits"] += 1
        return _copy(kept)

    cls.load_config = load_config  # type: ignore[attr-defined]


def install() -> None:
    """Keep parsed configs from now on in this process (idempotent)."""
    if _installed:
        return
    # Hydra's plugin scan imports its core plugins afresh: the classes its compose uses are the registry's,
    # not necessarily the ones imported above (those are for the type checker)
    Plugins.instance()
    registry = SourcesRegistry.instance()
    _wrap(registry.resolve("file"), _file_key)
    _wrap(registry.resolve("pkg"), _pkg_key)


def uninstall() -> None:
    """Hydra's own loading again, and nothing kept (for the test that compares the two)."""
    for cls, original in _installed.items():
        cls.load_config = original  # type: ignore[attr-defined]
    _installed.clear()
    _kept.clear()
    _composed.clear()


def compose(conf: Path, name: str, overrides: list[str]) -> DictConfig:
    """Hydra's compose of ``name`` in the config folder ``conf`` (one of the package's roots) with ``overrides``;
    a deep copy of the kept composition when the same one ran before (an error is raised afresh each time)."""
    key = (str(conf), name, tuple(overrides))
    kept = _composed.get(key) if _installed else None
    if kept is None:
        with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
            kept = hydra_compose(config_name=name, overrides=list(overrides))
        if not _installed:
            return kept
        _composed[key] = kept
    else:
        stats["composed_hits"] += 1
    return copy.deepcopy(kept)
