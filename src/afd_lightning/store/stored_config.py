"""Configs read back from a file (a checkpoint's stored run config): data, never code.

What a file holds is parsed as plain data into a schema we own; only then is anything built, and only
from values that schema allows:

1. **Plain values, nothing resolved.** :func:`plain` copies the stored config into fresh dicts, lists
   and scalars (OmegaConf nodes are converted with resolvers off). Any string holding an interpolation
   (``${``) is refused with its key: train.py writes stored configs resolved, so a genuine file never
   holds one. The walk counts the nodes it visits (shared references count each time; cycles are
   refused) and stops at :data:`MAX_NODES`.
2. **Per-slot, per-argument schemas.** Each slot (``model``, ``dataset``, ``method``, ``attack``,
   ``eval_attack``, and inside a method ``optimizer*``, ``scheduler``, ``discriminator``) allows its own
   kind of target only (:func:`slot_targets`). For each target the arguments a stored config may set
   are the named parameters of its signature (following ``**kwargs`` to the base class; an attack
   factory's extras: the parameters of its attack class), with types from the annotations and
   finite numbers. ``_args_`` are bound to parameter names first, so ``attack_cls`` is checked
   wherever it is given. Arguments that name executables, downloads, checksums or paths
   (:func:`never_from_file`) are dropped from the stored config and come from the caller (the user's
   own config) or the class's defaults.
3. **Bounded.** Networks are first built on the ``meta`` device (no memory) and refused above
   :data:`MAX_PARAMETERS` parameters.

Only then is the object built, by :func:`build` from the checked plain dict itself (no Hydra, no
OmegaConf in between): what is checked is exactly what is built.

``trust`` (a list of module prefixes given by the *caller*, never read from a file) lets the model slot
name networks of the caller's own package, e.g. ``trust=["mynets"]``.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import math
import re
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any, NoReturn

from afd_lightning.config.keys import runtime_keys
from afd_lightning.errors import AFDUserError

# A stored run config has a few hundred nodes; a file asking for more is not one of ours.
MAX_NODES = 20_000
# The largest network of the paper (WRN-34-10) has 46 M parameters.
MAX_PARAMETERS = 200_000_000
MAX_STRING = 1_000
MAX_LIST = 10_000
MAX_INT = 2**31

# How a network runs, not what it is (afd_lightning.config.run_config); loaders build plain modules without them.
RUN_SWITCHES = runtime_keys("model")
HYDRA_KEYS = frozenset({"_target_", "_args_", "_partial_"})
# Slots nested inside a method's config, by argument name.
METHOD_SUBSLOTS = {"discriminator": "discriminator", "scheduler": "scheduler"}
# Arguments the code passes itself (built objects, parameters); a stored config must not set them.
GIVEN_BY_CODE = {
    "method": frozenset({"model", "attack", "eval_attack"}),
    "optimizer": frozenset({"params"}),
    "scheduler": frozenset({"optimizer"}),
    "discriminator": frozenset({"embed_dim"}),
}
# Names (or parts of names) of arguments that pick executables, downloads, checksums or paths.
_NEVER_FROM_FILE = re.compile(
    r"(^|_)(dir|dirs|path|paths|file|files|root|url|urls|cache|download|fetch|npm|exe|executable|command|cmd|"
    r"sha256|sha1|md5|checksum|hash)($|_)"
)


class UnsafeConfigError(AFDUserError):
    """A stored config names something that is not on the allow-list of buildable objects."""


class OutsideCodeError(UnsafeConfigError):
    """A stored config's network names code outside afd-lightning that the caller did not trust."""


class StoredConfigLimitError(UnsafeConfigError):
    """A stored config asks for more than a bound allows (nodes, parameters)."""


def never_from_file(name: str) -> bool:
    """Whether argument ``name`` picks an executable, a download, a checksum or a path (never taken from a file)."""
    return bool(_NEVER_FROM_FILE.search(name.lower()))


# --------------------------------------------------------------------------------------- allow-lists

# Public names of these modules are what a stored config may build (filtered to the kinds below).
_OWN_MODULES = ("afd_lightning.nets", "afd_lightning.data", "afd_lightning.methods", "afd_lightning.attacks")


@cache
def allowed_targets() -> dict[str, Any]:
    """``_target_`` strings a stored config may name, mapped to the objects they build.

    The package's own networks (classes and factory functions exported by ``afd_lightning.nets``),
    data modules, training methods and attack factories, under their public name and their
    defining module's name; and the optimizers and learning-rate schedulers of ``torch.optim``.
    """
    import pytorch_lightning as pl
    import torch
    from torch import nn

    from afd_lightning.attacks import AttackFactory

    kinds = (nn.Module, pl.LightningDataModule, pl.LightningModule, AttackFactory)
    allowed: dict[str, Any] = {}
    for module_name in _OWN_MODULES:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            own_function = inspect.isfunction(obj) and module_name == "afd_lightning.nets" and name.islower()
            if own_function or (inspect.isclass(obj) and issubclass(obj, kinds) and not _is_protocol(obj)):
                allowed[f"{module_name}.{name}"] = obj
                allowed[f"{obj.__module__}.{obj.__qualname__}"] = obj
    schedulers = torch.optim.lr_scheduler
    for module, base in ((torch.optim, torch.optim.Optimizer), (schedulers, schedulers.LRScheduler)):
        for name in dir(module):
            obj = getattr(module, name)
            if inspect.isclass(obj) and issubclass(obj, base) and obj is not base:
                allowed[f"{module.__name__}.{name}"] = obj
    return allowed


def _is_protocol(obj) -> bool:
    return bool(getattr(obj, "_is_protocol", False))


@cache
def slot_targets() -> dict[str, frozenset[str]]:
    """For each slot, the ``_target_`` strings it may hold (a subset of :func:`allowed_targets`)."""
    import pytorch_lightning as pl
    import torch
    from torch import nn

    from afd_lightning.attacks import AttackFactory
    from afd_lightning.nets import AdversarialDecoder

    allowed = allowed_targets()

    def where(test) -> frozenset[str]:
        return frozenset(name for name, obj in allowed.items() if test(obj))

    def is_cls(obj, base) -> bool:
        return inspect.isclass(obj) and issubclass(obj, base)

    network = where(
        lambda o: (
            (inspect.isfunction(o) or is_cls(o, nn.Module))
            and o.__module__.startswith("afd_lightning.nets")
            and o is not AdversarialDecoder
            and not (inspect.isclass(o) and o.__name__ in ("Normalize", "L2Normalize"))
        )
    )
    return {
        "model": network,
        "body": network,
        "dataset": where(lambda o: is_cls(o, pl.LightningDataModule)),
        "method": where(lambda o: is_cls(o, pl.LightningModule)),
        "attack": where(lambda o: is_cls(o, AttackFactory)),
        "eval_attack": where(lambda o: is_cls(o, AttackFactory)),
        "optimizer": where(lambda o: is_cls(o, torch.optim.Optimizer)),
        "scheduler": where(lambda o: is_cls(o, torch.optim.lr_scheduler.LRScheduler)),
        "discriminator": where(lambda o: o is AdversarialDecoder),
    }


@cache
def _attack_class_table() -> dict[str, type]:
    from afd_lightning.attacks import APGDCE
    from afd_lightning.process.compat import advertorch

    attacks = advertorch().attacks
    table = {
        f"advertorch.attacks.{n}": obj
        for n, obj in vars(attacks).items()
        if inspect.isclass(obj) and issubclass(obj, attacks.Attack)
    }
    table["afd_lightning.attacks.APGDCE"] = APGDCE
    table[f"{APGDCE.__module__}.{APGDCE.__qualname__}"] = APGDCE
    return table


def allowed_attack_classes() -> frozenset[str]:
    """``attack_cls`` strings a stored config may name: advertorch's attack classes and our own."""
    return frozenset(_attack_class_table())


def _trusted_object(target: str, trust: tuple[str, ...], key: str, where: str):
    """The network ``target`` of a module the caller trusts (its own package), or None if none is trusted."""
    from torch import nn

    prefix = next((p for p in trust if target == p or target.startswith(p + ".")), None)
    if prefix is None:
        return None
    module_name, _, name = target.rpartition(".")
    if not module_name or not name.isidentifier() or name.startswith("_"):
        raise UnsafeConfigError(f"{where}: {key}={target!r} is not a module path followed by a public name")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise UnsafeConfigError(f"{where}: {key}={target!r}: module {module_name} cannot be imported ({err})") from err
    obj = getattr(module, name, None)
    # No attribute walks: the object must be defined in the trusted package, not imported into it.
    defined_in = getattr(obj, "__module__", "") or ""
    if not (defined_in == prefix or defined_in.startswith(prefix + ".")):
        raise UnsafeConfigError(
            f"{where}: {key}={target!r} is not defined in the trusted package {prefix!r} "
            f"(it comes from {defined_in or 'nowhere'}), so the file was refused"
        )
    if not ((inspect.isclass(obj) and issubclass(obj, nn.Module)) or inspect.isfunction(obj)):
        raise UnsafeConfigError(
            f"{where}: {key}={target!r} is neither an nn.Module class nor a function building one, so the file was refused"
        )
    return obj


def _normalise_trust(trust) -> tuple[str, ...]:
    if trust is None:
        return ()
    if isinstance(trust, str):
        trust = [trust]
    out = []
    for prefix in trust:
        prefix = str(prefix).strip()
        if not prefix or not all(part.isidentifier() for part in prefix.split(".")):
            raise AFDUserError(f"trust={prefix!r} is not a module name (e.g. trust=['mynets'])")
        if prefix == "afd_lightning" or prefix.startswith("afd_lightning."):
            raise AFDUserError(f"trust={prefix!r}: afd-lightning's own networks need no trust; name your own package")
        out.append(prefix)
    return tuple(out)


# --------------------------------------------------------------------------------------- plain values


def plain(node, where: str = "stored config", prefix: str = "") -> Any:
    """A fresh copy of ``node`` made of dicts, lists, str, int, float, bool and None only (see module doc).

    Refuses interpolations (``${``), other types, non-string keys, cycles and more than
    :data:`MAX_NODES` nodes, naming the key.
    """
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(node, (DictConfig, ListConfig)):
        node = OmegaConf.to_container(node, resolve=False)
    count = 0
    active: set[int] = set()

    def walk(value, path: str):
        nonlocal count
        count += 1
        if count > MAX_NODES:
            raise StoredConfigLimitError(
                f"{where}: the stored config has more than {MAX_NODES} nodes (shared references count each time "
                f"they are used), at {path or 'the top'}; a config written by train.py has a few hundred, so the "
                "file was refused"
            )
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int):
            if abs(value) > MAX_INT:
                raise UnsafeConfigError(f"{where}: {path}={value} is out of range (|value| <= {MAX_INT})")
            return value
        if isinstance(value, float):
            if not math.isfinite(value):
                raise UnsafeConfigError(f"{where}: {path}={value} is not a finite number")
            return value
        if isinstance(value, str):
            if "${" in value:
                raise UnsafeConfigError(
                    f"{where}: {path}={value!r} holds an interpolation (${{...}}); a stored config is written "
                    "resolved and is never resolved on load, so the file was refused"
                )
            if len(value) > MAX_STRING:
                raise UnsafeConfigError(
                    f"{where}: {path} is a string of {len(value)} characters (at most {MAX_STRING})"
                )
            return value
        if isinstance(value, (Mapping, list, tuple)):
            if id(value) in active:
                raise UnsafeConfigError(f"{where}: {path or 'the config'} contains itself (a cycle)")
            active.add(id(value))
            try:
                if isinstance(value, Mapping):
                    out = {}
                    for key, item in value.items():
                        if not isinstance(key, str) or "${" in key or len(key) > MAX_STRING:
                            raise UnsafeConfigError(
                                f"{where}: {path or 'the config'} has the key {key!r} (keys are plain names)"
                            )
                        out[key] = walk(item, f"{path}.{key}" if path else key)
                    return out
                if len(value) > MAX_LIST:
                    raise UnsafeConfigError(f"{where}: {path} has {len(value)} entries (at most {MAX_LIST})")
                return [walk(item, f"{path}[{i}]") for i, item in enumerate(value)]
            finally:
                active.discard(id(value))
        raise UnsafeConfigError(
            f"{where}: {path}={type(value).__name__} is not plain data (dicts, lists, strings, numbers, booleans, null)"
        )

    return walk(node, prefix)


# --------------------------------------------------------------------------------------- schemas


def _named_parameters(obj) -> dict[str, inspect.Parameter]:
    """The keyword parameters ``obj`` accepts, following ``**kwargs`` up the base classes (never ``**kwargs`` itself)."""
    params: dict[str, inspect.Parameter] = {}
    owners = (
        [vars(cls)["__init__"] for cls in obj.__mro__ if "__init__" in vars(cls)] if inspect.isclass(obj) else [obj]
    )
    for fn in owners:
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError):
            break
        var_keyword = False
        for name, p in signature.parameters.items():
            if name == "self" or p.kind is inspect.Parameter.VAR_POSITIONAL:
                continue
            if p.kind is inspect.Parameter.VAR_KEYWORD:
                var_keyword = True
                continue
            params.setdefault(name, p)
        if not var_keyword:
            break
    return params


def _type_ok(annotation, value) -> bool | None:
    """Whether ``value`` fits a string annotation; None when the annotation says nothing we can check."""
    if annotation is inspect.Parameter.empty:
        return None
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    verdicts = []
    for part in (t.strip() for t in text.split("|")):
        if part == "None":
            verdicts.append(value is None)
        elif part == "bool":
            verdicts.append(isinstance(value, bool))
        elif part == "int":
            verdicts.append(isinstance(value, int) and not isinstance(value, bool))
        elif part == "float":
            verdicts.append(isinstance(value, (int, float)) and not isinstance(value, bool))
        elif part == "str":
            verdicts.append(isinstance(value, str))
        elif m := re.fullmatch(r"(?:Sequence|list|tuple)\[(int|float|str)(?:, \.\.\.)?\]", part):
            inner = m.group(1)
            verdicts.append(isinstance(value, list) and all(_type_ok(inner, v) for v in value))
        else:
            return None
    return any(verdicts)


def _scalar_or_list(value) -> bool:
    if isinstance(value, list):
        return all(v is None or isinstance(v, (bool, int, float, str)) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


class _Checker:
    """Checks one stored config against the slot schemas and returns the plain, checked dict to build."""

    def __init__(self, where: str, trust: tuple[str, ...] = ()):
        self.where = where
        self.trust = trust

    def fail(self, message: str) -> NoReturn:
        raise UnsafeConfigError(f"{self.where}: {message}")

    def target_of(self, node: dict, slot: str, path: str):
        key = f"{path}._target_" if path else "_target_"
        target = node.get("_target_")
        if not isinstance(target, str):
            self.fail(f"{key}={target!r} is not the name of something afd-lightning builds, so the file was refused")
        allowed = allowed_targets()
        if target in allowed:
            if target not in slot_targets()[slot]:
                self.fail(
                    f"{key}={target!r} cannot sit in the {slot} slot (a {slot} must be one of "
                    f"{_examples(slot_targets()[slot])}), so the file was refused"
                )
            return allowed[target]
        if slot in ("model", "body"):
            obj = _trusted_object(target, self.trust, key, self.where)
            if obj is not None:
                return obj
            raise OutsideCodeError(
                f"{self.where}: {key}={target!r} names code outside afd-lightning. If it is your own network, pass "
                f"trust=[{target.split('.')[0]!r}] (load_classifier(..., trust=[...]), "
                f"load_from_checkpoint(..., trust=[...]) or eval.py trust='[{target.split('.')[0]}]'); the list comes "
                "from you, never from the file. Otherwise do not use this file."
            )
        self.fail(
            f"{key}={target!r} is not something afd-lightning builds from a stored config (a {slot} must be one of "
            f"{_examples(slot_targets()[slot])}), so the file was refused. A checkpoint written by afd-lightning "
            "never names anything else: do not use this file."
        )

    def node(self, node, slot: str, path: str, user: Mapping | None = None) -> dict:
        if not isinstance(node, dict):
            self.fail(f"{path or slot}={node!r} is not a config block with a _target_")
        obj = self.target_of(node, slot, path)
        params = _named_parameters(obj)
        extra_params: dict[str, inspect.Parameter] = {}
        if slot in ("attack", "eval_attack"):
            extra_params = self.attack_class_parameters(node, params, path)
        out: dict[str, Any] = {"_target_": node["_target_"]}
        partial = node.get("_partial_", False)
        if not isinstance(partial, bool):
            self.fail(f"{path}._partial_={partial!r} must be true or false")
        if partial:
            if slot not in ("optimizer", "scheduler", "discriminator"):
                self.fail(f"{path}._partial_=true: a {slot} is built whole, never as a partial")
            out["_partial_"] = True
        arguments = self.bind(node, obj, path)
        for key, value in arguments.items():
            sub = f"{path}.{key}" if path else key
            if key.startswith("_"):
                self.fail(f"{sub}: the option {key} is not taken from a stored config")
            if never_from_file(key):
                continue  # executables, downloads, checksums, paths: the caller's config or the default
            if slot == "model" and key in RUN_SWITCHES:
                if not isinstance(value, bool):
                    self.fail(f"{sub}={value!r} must be true or false")
                out[key] = value
                continue
            param = params.get(key) or extra_params.get(key)
            if param is None:
                self.fail(
                    f"{sub}: {obj.__qualname__ if hasattr(obj, '__qualname__') else obj} has no argument {key!r} "
                    "a stored config may set, so the file was refused"
                )
            out[key] = self.argument(key, value, param, slot, sub, obj)
        for key, value in (user or {}).items():
            if key in params:
                out[key] = value
        return out

    def bind(self, node: dict, obj, path: str) -> dict:
        """The node's arguments by name, ``_args_`` bound to the parameters they fill."""
        arguments = {k: v for k, v in node.items() if k not in HYDRA_KEYS}
        args = node.get("_args_")
        if args is None:
            return arguments
        if not isinstance(args, list):
            self.fail(f"{path}._args_={args!r} must be a list")
        target = obj.__init__ if inspect.isclass(obj) else obj
        try:
            positional = [
                p
                for p in inspect.signature(target).parameters.values()
                if p.name != "self" and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            ]
        except (TypeError, ValueError):
            positional = []
        if len(args) > len(positional):
            self.fail(f"{path}._args_ has {len(args)} entries but only {len(positional)} named positional parameters")
        for p, value in zip(positional, args):
            if p.name in arguments:
                self.fail(f"{path}: {p.name} is given both by position (_args_) and by name")
            arguments[p.name] = value
        return arguments

    def attack_class_parameters(self, node: dict, params: dict, path: str) -> dict:
        arguments = self.bind(node, allowed_targets()[node["_target_"]], path)
        name = arguments.get("attack_cls")
        if not isinstance(name, str) or name not in _attack_class_table():
            self.fail(
                f"{path}.attack_cls={name!r} is not an attack class afd-lightning builds from a stored config "
                "(advertorch's attacks and afd_lightning.attacks.APGDCE only), so the file was refused."
            )
        attack_params = _named_parameters(_attack_class_table()[name])
        taken = {"predict", "loss_fn", "eps", "nb_iter", "eps_iter", "rand_init", "clip_min", "clip_max"}
        return {k: p for k, p in attack_params.items() if k not in taken and k not in params}

    def argument(self, key: str, value, param: inspect.Parameter, slot: str, path: str, owner):
        if key in GIVEN_BY_CODE.get(slot, ()):
            self.fail(f"{path}: a {slot}'s {key} is passed by afd-lightning itself, never taken from a stored config")
        if slot == "method" and isinstance(value, dict) and "_target_" in value:
            sub = "optimizer" if key.startswith("optimizer") else METHOD_SUBSLOTS.get(key)
            if sub is None:
                self.fail(f"{path}: a method's {key} is a value, not a config block to build")
            return self.node(value, sub, path)
        if slot == "model" and key == "body" and isinstance(value, dict):
            return self.node(value, "body", path)
        if key == "meta" and slot == "dataset":
            if not isinstance(value, dict):
                self.fail(f"{path} must be a block of numbers, strings and lists")
            for name, item in value.items():
                if not _scalar_or_list(item):
                    self.fail(f"{path}.{name}={item!r} must be a number, string, boolean, null or a list of them")
            return value
        if not _scalar_or_list(value):
            self.fail(f"{path}={value!r} must be a number, string, boolean, null or a list of them")
        verdict = _type_ok(param.annotation, value)
        if verdict is False:
            self.fail(f"{path}={value!r} does not fit the argument's type ({param.annotation})")
        return value


def _examples(names: Iterable[str]) -> str:
    short = sorted(n for n in names if n.count(".") <= 2 or n.startswith("torch.optim"))
    shown = ", ".join(short[:6])
    return shown + (", ..." if len(short) > 6 else "")


def check_slot(node, slot: str, where: str = "stored config", prefix: str | None = None, user=None, trust=()) -> dict:
    """The stored ``slot`` config as a plain, checked dict (see module doc); raises UnsafeConfigError."""
    prefix = slot if prefix is None else prefix
    value = plain(node, where, prefix)
    return _Checker(where, _normalise_trust(trust)).node(value, slot, prefix, user)


SLOTS = ("model", "dataset", "method", "attack", "eval_attack")


def check_stored(node, where: str = "config", prefix: str = "", trust=()) -> dict:
    """Check a stored run config (or one slot of it when ``prefix`` names the slot); returns the checked slots.

    Nothing the file names is imported or called, except modules the caller named in ``trust``.
    """
    if prefix:
        slot = prefix.rsplit(".", 1)[-1]
        if slot not in SLOTS:
            raise ValueError(f"check_stored: unknown slot {prefix!r}")
        if node is None:
            return {}
        return {slot: check_slot(node, slot, where, prefix, trust=trust)}
    value = plain(node, where)
    if not isinstance(value, dict):
        raise UnsafeConfigError(f"{where}: the stored config is not a mapping")
    checker = _Checker(where, _normalise_trust(trust))
    return {key: checker.node(value[key], key, key) for key in SLOTS if value.get(key) is not None}


# --------------------------------------------------------------------------------------- building


def build(checked: Any, **kwargs):
    """Build a checked plain config: ``_target_`` nodes are called with their built arguments (no Hydra)."""
    if isinstance(checked, list):
        return [build(v) for v in checked]
    if not isinstance(checked, dict) or "_target_" not in checked:
        return checked
    target = checked["_target_"]
    obj = allowed_targets().get(target) or _trusted_cache[target]
    arguments = {k: build(v) for k, v in checked.items() if k not in HYDRA_KEYS}
    arguments.update(kwargs)
    if checked.get("_partial_"):
        return functools.partial(obj, **arguments)
    return obj(**arguments)


# Trusted networks resolved while checking, by target (only the caller's trusted prefixes get here).
_trusted_cache: dict[str, Any] = {}


def _remember_trusted(checked: dict, trust: tuple[str, ...], where: str) -> None:
    for key, value in checked.items():
        if key == "_target_" and value not in allowed_targets():
            _trusted_cache[value] = _trusted_object(value, trust, key, where)
        elif isinstance(value, dict):
            _remember_trusted(value, trust, where)


def count_parameters(checked_model: dict, where: str = "stored config") -> int:
    """Parameters of the network a checked model config describes, built on the ``meta`` device (no memory)."""
    import torch

    with torch.device("meta"):
        try:
            model = build({k: v for k, v in checked_model.items() if k not in RUN_SWITCHES})
        except (TypeError, ValueError, RuntimeError) as err:
            raise UnsafeConfigError(f"{where}: the stored model config does not build a network ({err})") from err
    return sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())


def check_size(count: int, where: str, what: str = "network") -> None:
    if count > MAX_PARAMETERS:
        raise StoredConfigLimitError(
            f"{where}: the stored config describes a {what} of {count:,} parameters, more than the limit of "
            f"{MAX_PARAMETERS:,} (afd_lightning.store.stored_config.MAX_PARAMETERS), so nothing was allocated"
        )


def build_stored_model(node, where: str = "stored config", trust=(), prefix: str = "model"):
    """The network of a stored model config: checked, sized on the meta device, then built (no throughput switches)."""
    trust = _normalise_trust(trust)
    checked = check_slot(node, "model", where, prefix, trust=trust)
    _remember_trusted(checked, trust, where)
    checked = {k: v for k, v in checked.items() if k not in RUN_SWITCHES}
    check_size(count_parameters(checked, where), where)
    model = build(checked)
    if hasattr(model, "encoder"):
        model.channels_last = False
    return model


def instantiate_stored(node, where: str = "stored config", prefix: str = "", user=None, **kwargs):
    """Build one slot of a config read out of a file, only through its schema (see module doc).

    ``prefix`` names the slot (``dataset``, ``attack``, ``eval_attack``, ``method``); ``user`` holds the
    caller's values for arguments never taken from a file (``data_dir``, ``download``...); ``kwargs``
    are built objects passed on (a method's model and attacks).
    """
    slot = prefix.rsplit(".", 1)[-1] if prefix else _slot_of(node)
    prefix = prefix or slot
    if slot == "model":
        return build_stored_model(node, where, prefix=prefix)
    if slot not in SLOTS:
        raise ValueError(f"instantiate_stored: unknown slot {prefix!r}")
    checked = check_slot(node, slot, where, prefix, user=user)
    if slot == "method" and isinstance(checked.get("discriminator"), dict) and "model" in kwargs:
        _check_discriminator_size(checked["discriminator"], kwargs["model"], where)
    return build(checked, **kwargs)


def _slot_of(node) -> str:
    """The slot a node without a named place fills, from its ``_target_`` (a method, dataset, attack or model)."""
    target = node.get("_target_") if isinstance(node, Mapping) else None
    for slot in ("method", "dataset", "attack", "model"):
        if target in slot_targets()[slot]:
            return slot
    return "model"  # anything else is refused there, naming the key


def _check_discriminator_size(checked: dict, model, where: str) -> None:
    import torch

    embed_dim = getattr(model, "embed_dim", None)
    if not isinstance(embed_dim, int):
        return
    with torch.device("meta"):
        try:
            disc = build({**checked, "_partial_": False}, embed_dim=embed_dim)
        except (TypeError, ValueError, RuntimeError) as err:
            raise UnsafeConfigError(f"{where}: the stored discriminator config does not build ({err})") from err
    check_size(sum(p.numel() for p in disc.parameters()), where, "discriminator")


def method_name(config: Mapping) -> str:
    """The short name of the run's method (``AFD``, ``AT``, ``NT``, ``TRADES``, ``MATCH``): its class's ``short_name``.

    A method the allow-list does not know keeps the last part of its ``_target_``.
    """
    target = str((config.get("method") or {}).get("_target_", "model"))
    cls = allowed_targets().get(target)
    return str(getattr(cls, "short_name", None) or target.rpartition(".")[2])
