"""Checks that answer in about a second: run by ``afd-train`` / ``afd-eval`` before Hydra, torch or Lightning.

The command line is composed once here with Hydra's compose API (no run directory is made, nothing heavy
is imported), then checked:

* an override of a key that does not exist in ``trainer``, ``model``, ``method``, ``dataset``, ``attack``
  or ``eval_attack`` gets "no option trainer.max_epoch; did you mean trainer.max_epochs?" (difflib over the
  composed keys and, when none is close, over the real signature of the group's ``_target_``), instead of
  Hydra's advice to add it with ``+`` and a TypeError from deep inside later;
* a ``+key=value`` that the group's ``_target_`` does not take is refused the same way;
* a top-level key or a config group that does not exist (``metod=afd``, ``metod.lr=0.1``) gets "no option metod;
  did you mean method?" instead of Hydra's advice to add it with ``+``; a ``+metod=afd`` whose name is that close
  to an existing key or group is refused the same way (nothing would read it);
* a config group option that does not exist (``dataset=mnsit``, ``experiment=paper_digits_afdd``) gets "no option
  dataset=mnsit; did you mean dataset=mnist?" with the group's options;
* a ``+key=value`` for a key that exists says to drop the ``+``;
* a negative or non-numeric ε of the threat model (``dataset.meta.eps*``, the attacks' ``eps``);
* a checkpoint to resume from (``ckpt_path``) or to evaluate (``ckpt_path``, ``source_ckpt``) that is not there;
* ``afd-eval``: a ``dataset=`` that is not a shipped dataset, and an output folder (or the ``eval/`` folder above
  it) that is a symbolic link, refused before Hydra makes the folder and opens the log in it.

A problem is printed once, as ``error: ...``, and the command exits with status 1. Anything this module cannot
judge (a malformed override) is left to Hydra, which reports it in its own words.

Nothing is left behind by a start that fails: :func:`run` notes which folders of the run directory's path do not
exist yet, and at exit removes those that are still empty (a start refused after Hydra made the run directory,
whose own files the entry point removed, leaves no ``logs/digits/afd/`` behind either).
"""

from __future__ import annotations

import atexit
import difflib
import os
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
        return compose(config_name=config_name, overrides=extra + overrides, return_hydra_config=True)


def _config_folders(root: str, config_dir: str | None) -> list[Path]:
    from afd_lightning.config.paths import config_dir as shipped

    return [shipped(root), *([Path(config_dir)] if config_dir else [])]


def _groups(root: str, config_dir: str | None) -> set[str]:
    """The config groups of the command: the folders of YAML files in its config folders."""
    return {
        d.name
        for folder in _config_folders(root, config_dir)
        if folder.is_dir()
        for d in folder.iterdir()
        if d.is_dir() and not d.name.startswith(("_", ".")) and any(d.glob("*.yaml"))
    }


def _options(root: str, config_dir: str | None, group: str) -> list[str]:
    return sorted({f.stem for folder in _config_folders(root, config_dir) for f in (folder / group).glob("*.yaml")})


def _root_keys(root: str, config_dir: str | None, cfg) -> set[str]:
    """The keys the primary config file itself sets (``conf/eval/eval.yaml``'s ``dataset: null`` among them)."""
    from omegaconf import OmegaConf

    name = str(OmegaConf.select(cfg, "hydra.job.config_name", default=root) or root)
    keys: set[str] = set()
    for folder in _config_folders(root, config_dir):
        path = folder / f"{name}.yaml"
        if path.is_file():
            keys |= {str(k) for k in OmegaConf.load(path)}
    return keys


def _top_level_message(cfg, key: str, root: str, config_dir: str | None, added: bool) -> str | None:
    """The did-you-mean line for ``key`` whose first part is neither a top-level key nor a group; None if it is one.

    ``added``: a ``+key`` that composed; it is refused only when its name is close to an existing one (a typo that
    nothing would read), since a key of one's own may be added on purpose.
    """
    parts = key.split(".")
    head = parts[0]
    groups = _groups(root, config_dir)
    existing = {str(k) for k in cfg if not (added and str(k) == head)}
    if head in existing or head in groups or (added and head in _root_keys(root, config_dir, cfg)):
        return None  # (Hydra lets + set a key the root config holds as null: the same as without the +)
    candidates = sorted(existing | groups)
    close = difflib.get_close_matches(head, candidates, n=1, cutoff=0.6)
    if close:
        why = f" (+{key} would add a key that nothing reads)" if added else ""
        return f"no option {key}; did you mean {'.'.join([close[0], *parts[1:]])}?{why}"
    if added:
        return None
    return f"no option {key}; afd-{root} has these keys and config groups: {', '.join(candidates)}"


def _missing_option_message(err, reduced: list[str], root: str, config_dir: str | None) -> str | None:
    """ "no option dataset=mnsit; did you mean dataset=mnist? (...)" for Hydra's "Could not find 'dataset/mnsit'"."""
    match = re.search(r"Could not (?:find|load) '([^']+)'", str(err))
    if not match or "/" not in match.group(1):
        return None
    group, _, option = match.group(1).rpartition("/")
    options = sorted(getattr(err, "options", None) or _options(root, config_dir, group))
    if not options:
        return None
    typed = next(
        (o.lstrip("+~").split("=", 1)[0] for o in reduced if o.partition("=")[2] == option),
        group.replace("/", "."),
    )
    close = difflib.get_close_matches(option, options, n=1, cutoff=0.6)
    guess = f"; did you mean {typed}={close[0]}?" if close else ""
    return f"no option {typed}={option}{guess} ({group} options: {', '.join(options)})"


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
                how = "a .ckpt file" if root == "train" else "a .ckpt file or an afd-export folder"
                problems.append(f"{key}: the {what} {path} does not exist (pass the path of {how})")
    return problems


def _dataset_problems(cfg) -> list[str]:
    """``afd-eval dataset=``: a shipped dataset's name (whether it may differ from the checkpoint's is decided later)."""
    from omegaconf import OmegaConf

    from afd_lightning.config.paths import config_dir

    value = OmegaConf.select(cfg, "dataset", default=None, throw_on_resolution_failure=False)
    if value is None:
        return []
    options = sorted(f.stem for f in (config_dir("train") / "dataset").glob("*.yaml"))
    if str(value) in options:
        return []
    return [f"{did_you_mean(f'dataset={value}', str(value), options)} (shipped datasets: {', '.join(options)})"]


def _planned_folder(cfg, key: str = "hydra.run.dir") -> Path | None:
    """The folder ``key`` names (Hydra's run directory, or ``output_dir``) when the command line tells it, else None."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        if key == "output_dir" and OmegaConf.is_interpolation(cfg, key):
            return None  # eval.yaml's output_dir: ${hydra:runtime.output_dir}, i.e. the run directory
        folder = OmegaConf.select(cfg, key)
    except OmegaConfBaseException:
        return None
    return Path(str(folder)) if folder else None


def _link_problems(root: str, folder: Path | None) -> list[str]:
    """An evaluation's output folder, or the ``eval/`` folder above it, must not be a link (nothing goes through it)."""
    if root != "eval" or folder is None:
        return []
    for path in (folder, *([folder.parent] if folder.parent.name == "eval" else [])):
        if path.is_symlink():
            return [
                f"{path} is a symbolic link (to {os.readlink(path)}); afd-lightning never writes through a link in a "
                "run or output directory, as that would change a file outside it. Remove the link (or use another "
                "directory) and run again."
            ]
    return []


def _folders_to_make(folder: Path) -> list[Path]:
    """``folder`` and its parents that do not exist yet, deepest first."""
    missing = []
    for path in (folder, *folder.parents):
        if os.path.lexists(path):
            break
        missing.append(path)
    return missing


def _remove_if_still_empty(folders: list[Path]) -> None:
    """At exit: each of ``folders`` (deepest first) that is an empty folder goes; the first one holding anything stays
    and so do those above it."""
    for folder in folders:
        if not folder.is_dir() or folder.is_symlink():
            continue
        try:
            folder.rmdir()
        except OSError:
            return


def _composition_message(err, reduced: list[str], root: str, config_dir: str | None, config_name: str):
    """Our line for a command Hydra cannot compose (an unknown key, group or option); None: Hydra's own words."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    text = str(err)
    existing = re.search(r"Could not append to config\. An item is already at '([^']+)'", text)
    if existing:
        key = existing.group(1)
        return f"{key} is an option already: write {key}=... without the + (a + adds a key that does not exist)"
    missing = _missing_option_message(err, reduced, root, config_dir)
    if missing:
        return missing
    match = re.search(r"Could not (?:override|append to) '([^']+)'", text)
    if not match:
        return None
    key = match.group(1)
    try:
        base = _compose(root, [o for o in reduced if o.lstrip("+~").split("=", 1)[0] != key], config_dir, config_name)
    except (HydraException, OmegaConfBaseException):
        return None
    return _top_level_message(base, key, root, config_dir, added=False) or _unknown_key_message(base, key, added=False)


def check(root: str, argv: Sequence[str]) -> Path | None:
    """Raise :class:`PreflightError` listing every problem of the command line ``argv`` (``root``: train | eval).

    Returns the run directory Hydra will make for the command (``hydra.run.dir``: a training's run directory, an
    evaluation's output folder unless ``output_dir=`` sends the results elsewhere) when the command line tells it
    (not for a sweep); None otherwise.
    """
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    split = _split_argv(argv)
    if split is None:
        return None
    overrides, flags, multirun = split
    config_dir = flags.get("--config-dir") or flags.get("-cd")
    config_name = flags.get("--config-name") or flags.get("-cn") or ("train" if root == "train" else "eval")
    if flags.get("--config-path") or flags.get("-cp"):
        return None  # another primary config folder: Hydra's business
    try:
        reduced = _first_of_sweeps(overrides) if multirun else overrides
    except HydraException:
        return None  # a malformed override: Hydra says what is wrong with it
    if reduced is None:
        return None
    try:
        cfg = _compose(root, reduced, config_dir, config_name)
    except HydraException as err:
        message = _composition_message(err, reduced, root, config_dir, config_name)
        if message:
            raise PreflightError(message) from None
        return None
    except OmegaConfBaseException:
        return None
    problems = []
    for o in reduced:
        if o.startswith("+") and not o.startswith("++"):
            key = o[1:].split("=", 1)[0]
            message = _top_level_message(cfg, key, root, config_dir, added=True) or _unknown_key_message(
                cfg, key, added=True
            )
            if message:
                problems.append(message)
    problems += _eps_problems(cfg) + _file_problems(root, cfg)
    if root == "eval":
        problems += _dataset_problems(cfg)
    planned = None if multirun else _planned_folder(cfg)
    if root == "eval" and not multirun:  # where the results go: output_dir=..., else the run directory
        problems += _link_problems(root, _planned_folder(cfg, "output_dir") or planned)
    if problems:
        raise PreflightError("; ".join(problems))
    return planned


def run(root: str, argv: Sequence[str] | None = None) -> None:
    """:func:`check` the command line; on a problem print one ``error:`` line and exit with status 1.

    The folders the run's directory adds (``logs/``, ``logs/digits/``...) are noted, and removed at exit if they
    are still empty: a start refused after Hydra made its directory leaves nothing behind.
    """
    try:
        planned = check(root, sys.argv[1:] if argv is None else argv)
    except PreflightError as err:
        raise SystemExit(f"error: {err}") from None
    if planned is not None:
        missing = _folders_to_make(planned.absolute())
        if missing:
            atexit.register(_remove_if_still_empty, missing)
