"""Checks that answer in about a second: run by ``afd-train`` / ``afd-eval`` before Hydra, torch or Lightning.

The command line is composed once here with Hydra's compose API (no run directory is made, nothing heavy
is imported), then checked:

* an override of a key that does not exist in ``trainer``, ``model``, ``method``, ``dataset``, ``attack``
  or ``eval_attack`` gets "no option trainer.max_epoch; did you mean trainer.max_epochs?" (difflib over the
  composed keys and, when none is close, over the real signature of the group's ``_target_``), instead of
  Hydra's advice to add it with ``+`` and a TypeError from deep inside later;
* a ``+key=value`` that the group's ``_target_`` does not take is refused the same way;
* a negative or non-numeric ε of the threat model (``dataset.meta.eps*``, the attacks' ``eps``);
* a checkpoint to resume from (``ckpt_path``) or to evaluate (``ckpt_path``, ``source_ckpt``) that is not there.

A problem is printed once, as ``error: ...``, and the command exits with status 1. Anything this module cannot
judge (a malformed override, a config group option that does not exist) is left to Hydra, which reports it
in its own words.
"""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from afd_lightning.config.suggest import did_you_mean, signature_keys
from afd_lightning.errors import ConfigError

# Config nodes whose keys are arguments of their _target_.
GROUPS = ("trainer", "model", "method", "dataset", "attack", "eval_attack")
# Hydra's own command-line flags: with these, the command shows something instead of running.
_SHOW_FLAGS = {"--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--shell-completion", "-sc"}
_VALUE_FLAGS = {"--config-dir", "-cd", "--config-path", "-cp", "--config-name", "-cn", "--package", "-p"}
_RERUN_FLAGS = {"--experimental-rerun"}


class PreflightError(ConfigError):
    """A command-line value that cannot work, found before anything heavy was imported."""


def _split_argv(argv: Sequence[str]) -> tuple[list[str], dict[str, str], bool] | None:
    """(overrides, value flags, multirun) from Hydra's command line; None when the command only shows something."""
    overrides, flags, multirun = [], {}, False
    it = iter(argv)
    for arg in it:
        name = arg.split("=", 1)[0]
        if name in _SHOW_FLAGS or name in _RERUN_FLAGS:
            return None
        if name in ("-m", "--multirun"):
            multirun = True
        elif name in _VALUE_FLAGS:
            flags[name] = arg.split("=", 1)[1] if "=" in arg else next(it, "")
        elif arg.startswith("-"):
            return None  # a flag of a newer Hydra: let Hydra handle the whole command line
        else:
            overrides.append(arg)
    return overrides, flags, multirun


def _first_of_sweeps(overrides: list[str]) -> list[str] | None:
    """The overrides with each sweep (``a,b``, ``range(3)``...) reduced to its first value; None if one cannot be."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    out = []
    for text, o in zip(overrides, parsed):
        if not o.is_sweep_override():
            out.append(text)
            continue
        try:
            first = next(o.sweep_string_iterator())
        except (StopIteration, ValueError, TypeError, NotImplementedError):
            return None
        out.append(f"{'+' if o.is_add() else ''}{o.get_key_element()}={first}")
    return out


def _compose(root: str, overrides: list[str], config_dir: str | None, config_name: str):
    from hydra import compose, initialize_config_dir

    from afd_lightning.config.paths import config_dir as shipped

    extra = [f"hydra.searchpath=[file://{Path(config_dir).resolve()}]"] if config_dir else []
    with initialize_config_dir(config_dir=str(shipped(root)), version_base="1.3"):
        return compose(config_name=config_name, overrides=extra + overrides)


def _unknown_key_message(cfg, key: str, added: bool) -> str | None:
    """The did-you-mean line for ``key`` (dotted) under one of GROUPS that ``cfg`` lacks; None if it is fine."""
    from omegaconf import OmegaConf

    parts = key.split(".")
    if parts[0] not in GROUPS or len(parts) < 2:
        return None
    parent = OmegaConf.select(cfg, ".".join(parts[:-1]), throw_on_resolution_failure=False)
    if parent is None or not OmegaConf.is_dict(parent):
        return None
    leaf = parts[-1]
    existing = [str(k) for k in parent if str(k) != "_target_" and not (added and k == parts[-1])]
    if not added and leaf in existing:
        return None
    target = parent.get("_target_") if len(parts) == 2 else None
    close = difflib.get_close_matches(leaf, existing, n=1, cutoff=0.6)
    if close and not added:
        return f"{did_you_mean(key, leaf, existing)} (keys of {'.'.join(parts[:-1])}: {', '.join(existing)})"
    if not isinstance(target, str):
        return None if added else did_you_mean(key, leaf, existing)
    found = signature_keys(target)
    if found is None:
        return None
    names, var_kw = found
    if leaf in names or var_kw:
        return None if added else f"{key} is not set by the config; add it with +{key}=... ({target} takes it)"
    return f"{did_you_mean(key, leaf, names + existing)} ({target} takes no argument {leaf})"


def _eps_problems(cfg) -> list[str]:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    keys = [f"dataset.meta.{k}" for k in ("eps", "eps_l2", "eps_l1")] + ["attack.eps", "eval_attack.eps"]
    problems = []
    for key in keys:
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent, default=None)
        if not OmegaConf.is_dict(node) or leaf not in node or OmegaConf.is_interpolation(node, leaf):
            continue  # an interpolation is checked where its value is set
        try:
            value = node[leaf]
        except OmegaConfBaseException:
            continue
        if value is None:
            continue
        values = list(value) if OmegaConf.is_list(value) else [value]
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                problems.append(f"{key}={value!r}: the attack budget ε must be a number >= 0")
                break
    return problems


def _file_problems(root: str, cfg) -> list[str]:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    problems = []
    keys = ("ckpt_path",) if root == "train" else ("ckpt_path", "source_ckpt")
    for key in keys:
        try:
            value = OmegaConf.select(cfg, key, default=None)
        except OmegaConfBaseException:
            continue
        if value is None or value == "???":
            continue
        for path in list(value) if OmegaConf.is_list(value) else [value]:
            if not isinstance(path, str) or path in ("last", "best"):
                continue
            if not Path(path).exists():
                what = "checkpoint to resume from" if root == "train" else "checkpoint"
                problems.append(f"{key}: the {what} {path} does not exist (pass the path of a .ckpt file)")
    return problems


def check(root: str, argv: Sequence[str]) -> None:
    """Raise :class:`PreflightError` listing every problem of the command line ``argv`` (``root``: train | eval)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    split = _split_argv(argv)
    if split is None:
        return
    overrides, flags, multirun = split
    config_dir = flags.get("--config-dir") or flags.get("-cd")
    config_name = flags.get("--config-name") or flags.get("-cn") or ("train" if root == "train" else "eval")
    if flags.get("--config-path") or flags.get("-cp"):
        return  # another primary config folder: Hydra's business
    try:
        reduced = _first_of_sweeps(overrides) if multirun else overrides
    except HydraException:
        return  # a malformed override: Hydra says what is wrong with it
    if reduced is None:
        return
    try:
        cfg = _compose(root, reduced, config_dir, config_name)
    except HydraException as err:
        match = re.search(r"Could not (?:override|append to) '([^']+)'", str(err))
        if not match:
            return  # e.g. an unknown config group option: Hydra lists the available ones
        key = match.group(1)
        try:
            base = _compose(
                root, [o for o in reduced if o.lstrip("+~").split("=", 1)[0] != key], config_dir, config_name
            )
        except (HydraException, OmegaConfBaseException):
            return
        message = _unknown_key_message(base, key, added=False)
        if message:
            raise PreflightError(message) from None
        return
    except OmegaConfBaseException:
        return
    problems = []
    for o in reduced:
        if o.startswith("+") and not o.startswith("++"):
            message = _unknown_key_message(cfg, o[1:].split("=", 1)[0], added=True)
            if message:
                problems.append(message)
    problems += _eps_problems(cfg) + _file_problems(root, cfg)
    if problems:
        raise PreflightError("; ".join(problems))


def run(root: str, argv: Sequence[str] | None = None) -> None:
    """:func:`check` the command line; on a problem print one ``error:`` line and exit with status 1."""
    try:
        check(root, sys.argv[1:] if argv is None else argv)
    except PreflightError as err:
        raise SystemExit(f"error: {err}") from None
