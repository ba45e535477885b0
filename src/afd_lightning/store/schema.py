"""The per-slot, per-argument schema a stored config is checked against before anything is built.

For each target the arguments a stored config may set are the named parameters of its signature (following
``**kwargs`` to the base classes; an attack factory's extras: the parameters of its attack class). Each value
must fit the parameter's annotation, resolved to a type (:func:`typing.get_type_hints`) and checked by
:func:`fits` for every form it can take: ``None``, ``bool``, ``int``, ``float`` (an int is a number too), ``str``,
``Literal[...]``, unions, sequences and tuples of these (a list in the file), mappings with string keys, and
classes (plain data is never an optimizer, a tensor or a callable). A parameter without an annotation takes the
type of its default (``decay_factor=1.0``: a float). Any other annotation (``Any``, a name that cannot be
resolved, a bare ``list``), or none with no usable default, **cannot be checked, so a stored config may not set
that argument**: the file is refused, naming the key and the annotation.
"""

from __future__ import annotations

import collections.abc
import inspect
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

from afd_lightning.config.keys import runtime_keys
from afd_lightning.store.allow import (
    NETWORK_SLOTS,
    attack_class,
    normalise_trust,
    slots_holding,
    targets_for,
    trusted_network,
)
from afd_lightning.store.plain import UnsafeConfigError, plain, shown

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
SLOTS = ("model", "dataset", "method", "attack", "eval_attack")
# Names (or parts of names) of arguments that pick executables, downloads, checksums or paths.
_NEVER_FROM_FILE = [
    "dir",
    "dirs",
    "path",
    "paths",
    "file",
    "files",
    "root",
    "url",
    "urls",
    "cache",
    "download",
    "fetch",
    "npm",
    "exe",
    "executable",
    "command",
    "cmd",
    "sha256",
    "sha1",
    "md5",
    "checksum",
    "hash",
]


def never_from_file(name: str) -> bool:
    """Whether argument ``name`` picks an executable, a download, a checksum or a path (never taken from a file)."""
    return any(part in _NEVER_FROM_FILE for part in name.lower().split("_"))


# --------------------------------------------------------------------------------------- parameter types
class Unresolved:
    """An annotation that names something :func:`typing.get_type_hints` cannot resolve here (kept as its text)."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


class Uncheckable(Exception):
    """An annotation :func:`fits` cannot decide for a value."""


def _owners(obj) -> list:
    return [vars(cls)["__init__"] for cls in obj.__mro__ if "__init__" in vars(cls)] if inspect.isclass(obj) else [obj]


# Standard names an annotation may use though its module imports them for type checkers only (torch's
# ``milestones: Iterable[int]``); the module's own names come first.
_STANDARD_NAMES: dict[str, Any] = {
    **{name: getattr(typing, name) for name in ("Any", "Optional", "Union", "Literal", "Callable")},
    **{name: getattr(collections.abc, name) for name in ("Iterable", "Sequence", "Mapping", "Collection")},
}


def _resolved_hints(fn) -> dict[str, Any]:
    """The annotations of ``fn``, resolved; one that cannot be resolved stays :class:`Unresolved`."""
    out: dict[str, Any] = {}
    namespace = {**_STANDARD_NAMES, **getattr(fn, "__globals__", {})}
    for name, annotation in getattr(fn, "__annotations__", {}).items():
        if not isinstance(annotation, str):
            out[name] = annotation
            continue
        try:
            out[name] = eval(annotation, namespace, {})  # noqa: S307 - the library's own annotation text
        except Exception:  # noqa: BLE001 - a name only defined for type checkers, or any other failure
            out[name] = Unresolved(annotation)
    return out


def named_parameters(obj) -> dict[str, tuple[inspect.Parameter, Any]]:
    """The keyword parameters ``obj`` accepts with their resolved types, following ``**kwargs`` up the base classes.

    A parameter without an annotation gets the type of its default (bool, int, float or str); otherwise it is
    :class:`Unresolved` and cannot be set by a stored config.
    """
    params: dict[str, tuple[inspect.Parameter, Any]] = {}
    for fn in _owners(obj):
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError):
            break
        hints = _resolved_hints(fn)
        var_keyword = False
        for name, p in signature.parameters.items():
            if name == "self" or p.kind is inspect.Parameter.VAR_POSITIONAL:
                continue
            if p.kind is inspect.Parameter.VAR_KEYWORD:
                var_keyword = True
                continue
            if name in params:
                continue
            if name in hints:
                kind = hints[name]
            elif type(p.default) in (bool, int, float, str):
                kind = type(p.default)
            else:
                kind = Unresolved("no annotation")
            params[name] = (p, kind)
        if not var_keyword:
            break
    return params


_SEQUENCES = (
    list,
    tuple,
    collections.abc.Sequence,
    collections.abc.MutableSequence,
    collections.abc.Iterable,
    collections.abc.Collection,
)
_MAPPINGS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)


def fits(kind: Any, value: Any) -> bool:
    """Whether the plain ``value`` fits the resolved annotation ``kind``; :class:`Uncheckable` when it cannot tell."""
    if kind is None or kind is type(None):
        return value is None
    if isinstance(kind, Unresolved) or kind is Any or isinstance(kind, typing.TypeVar):
        raise Uncheckable
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is typing.Union or origin is types.UnionType:
        undecided = False
        for member in args:
            try:
                if fits(member, value):
                    return True
            except Uncheckable:
                undecided = True
        if undecided:
            raise Uncheckable
        return False
    if origin is typing.Literal:
        return any(type(value) is type(a) and value == a for a in args)
    if origin is typing.Annotated:
        return fits(args[0], value)
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is str:
        return isinstance(value, str)
    if origin in _SEQUENCES:
        if not isinstance(value, list):
            return False
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return all(fits(args[0], v) for v in value)
            if not args:
                raise Uncheckable
            return len(value) == len(args) and all(fits(a, v) for a, v in zip(args, value))
        if len(args) != 1:
            raise Uncheckable
        return all(fits(args[0], v) for v in value)
    if origin in _MAPPINGS:
        if not isinstance(value, dict):
            return False
        if len(args) != 2 or args[0] is not str:
            raise Uncheckable
        return all(fits(args[1], v) for v in value.values())
    if origin is collections.abc.Callable or kind is collections.abc.Callable or kind is typing.Callable:
        return callable(value)  # plain data never is
    if origin is None and inspect.isclass(kind) and kind not in _SEQUENCES + _MAPPINGS:
        return isinstance(value, kind)  # a tensor, a module, an optimizer: plain data never is one
    raise Uncheckable


def _shown_type(param: inspect.Parameter, kind: Any) -> str:
    if isinstance(param.annotation, str):
        return param.annotation
    if param.annotation is not inspect.Parameter.empty:
        return getattr(param.annotation, "__name__", None) or str(param.annotation)
    return getattr(kind, "__name__", None) or str(kind)


def _scalar_or_list(value) -> bool:
    if isinstance(value, list):
        return all(v is None or isinstance(v, (bool, int, float, str)) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


def _examples(names: Iterable[str]) -> str:
    short = sorted(n for n in names if n.count(".") <= 2 or n.startswith("torch.optim"))
    shown_names = ", ".join(short[:6])
    return shown_names + (", ..." if len(short) > 6 else "")


# --------------------------------------------------------------------------------------- the checker
class Checker:
    """Checks one stored config against the slot schemas and returns the plain, checked dict to build.

    ``resolved`` maps each ``_target_`` met to the object it builds (the allow-list's, or a trusted class), so
    that building later uses what was checked here.
    """

    def __init__(self, where: str, trust: tuple[str, ...] = ()):
        self.where = where
        self.trust = trust
        self.resolved: dict[str, Any] = {}

    def fail(self, message: str) -> NoReturn:
        raise UnsafeConfigError(f"{self.where}: {message}")

    def target_of(self, node: dict, slot: str, path: str):
        key = f"{path}._target_" if path else "_target_"
        target = node.get("_target_")
        if not isinstance(target, str):
            self.fail(
                f"{key}={str(target)[:80]!r} is not the name of something afd-lightning builds, so the file was refused"
            )
        allowed = targets_for(slot)
        if target in allowed:
            self.resolved[target] = allowed[target]
            return allowed[target]
        elsewhere = slots_holding(target)
        if elsewhere:
            self.fail(
                f"{key}={target!r} cannot sit in the {slot} slot (a {slot} must be one of {_examples(allowed)}; "
                f"{target} is a {' / '.join(elsewhere)}), so the file was refused"
            )
        if slot in NETWORK_SLOTS and not target.startswith("afd_lightning."):
            obj = trusted_network(target, self.trust, key, self.where)
            self.resolved[target] = obj
            return obj
        self.fail(
            f"{key}={target[:200]!r} is not something afd-lightning builds from a stored config (a {slot} must be one "
            f"of {_examples(allowed)}), so the file was refused. A checkpoint written by afd-lightning never names "
            "anything else: do not use this file."
        )

    def node(self, node, slot: str, path: str, user: Mapping | None = None) -> dict:
        if not isinstance(node, dict):
            self.fail(f"{shown(path or slot)}={str(node)[:80]!r} is not a config block with a _target_")
        obj = self.target_of(node, slot, path)
        params = named_parameters(obj)
        extra_params: dict[str, tuple[inspect.Parameter, Any]] = {}
        if slot in ("attack", "eval_attack"):
            extra_params = self.attack_class_parameters(node, obj, params, path)
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
                self.fail(f"{shown(sub)}: the option {key[:80]} is not taken from a stored config")
            if never_from_file(key):
                continue  # executables, downloads, checksums, paths: the caller's config or the default
            if slot == "model" and key in RUN_SWITCHES:
                if not isinstance(value, bool):
                    self.fail(f"{sub}={str(value)[:80]!r} must be true or false")
                out[key] = value
                continue
            param = params.get(key) or extra_params.get(key)
            if param is None:
                self.fail(
                    f"{shown(sub)}: {getattr(obj, '__qualname__', obj)} has no argument {key[:80]!r} a stored config "
                    "may set, so the file was refused"
                )
            out[key] = self.argument(key, value, param, slot, sub)
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
            self.fail(f"{path}._args_={str(args)[:80]!r} must be a list")
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

    def attack_class_parameters(self, node: dict, obj, params: dict, path: str) -> dict:
        name = self.bind(node, obj, path).get("attack_cls")
        cls = attack_class(name) if isinstance(name, str) else None
        if cls is None:
            self.fail(
                f"{path}.attack_cls={str(name)[:200]!r} is not an attack class afd-lightning builds from a stored "
                "config (advertorch's attacks and afd_lightning.attacks.APGDCE only), so the file was refused."
            )
        taken = {"predict", "loss_fn", "eps", "nb_iter", "eps_iter", "rand_init", "clip_min", "clip_max"}
        return {k: p for k, p in named_parameters(cls).items() if k not in taken and k not in params}

    def argument(self, key: str, value, param: tuple[inspect.Parameter, Any], slot: str, path: str):
        if key in GIVEN_BY_CODE.get(slot, ()):
            self.fail(f"{path}: a {slot}'s {key} is passed by afd-lightning itself, never taken from a stored config")
        if slot == "method" and isinstance(value, dict) and "_target_" in value:
            sub = "optimizer" if key.startswith("optimizer") else METHOD_SUBSLOTS.get(key)
            if sub is None:
                self.fail(f"{path}: a method's {key} is a value, not a config block to build")
            return self.node(value, sub, path)
        if slot in NETWORK_SLOTS and key == "body" and isinstance(value, dict):
            return self.node(value, "body", path)
        if key == "meta" and slot == "dataset":
            if not isinstance(value, dict):
                self.fail(f"{path} must be a block of numbers, strings and lists")
            for name, item in value.items():
                if not _scalar_or_list(item):
                    self.fail(
                        f"{shown(f'{path}.{name}')}={str(item)[:80]!r} must be a number, string, boolean, null or a list of them"
                    )
            return value
        if not _scalar_or_list(value):
            self.fail(f"{shown(path)}={str(value)[:80]!r} must be a number, string, boolean, null or a list of them")
        parameter, kind = param
        try:
            ok = fits(kind, value)
        except Uncheckable:
            self.fail(
                f"{path}={str(value)[:80]!r}: the argument's type ({_shown_type(parameter, kind)}) cannot be checked "
                "for a value from a file, so a stored config may not set it"
            )
        if not ok:
            self.fail(f"{path}={str(value)[:80]!r} does not fit the argument's type ({_shown_type(parameter, kind)})")
        return value


def check_slot(node, slot: str, where: str = "stored config", prefix: str | None = None, user=None, trust=()) -> dict:
    """The stored ``slot`` config as a plain, checked dict (see the module doc); raises UnsafeConfigError."""
    return checked_slot(node, slot, where, prefix, user, trust)[0]


def checked_slot(
    node, slot: str, where: str = "stored config", prefix: str | None = None, user=None, trust=()
) -> tuple[dict, dict[str, Any]]:
    """(checked plain dict, ``_target_`` -> the object each one builds) for one stored slot."""
    prefix = slot if prefix is None else prefix
    value = plain(node, where, prefix)
    checker = Checker(where, normalise_trust(trust))
    return checker.node(value, slot, prefix, user), checker.resolved


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
    checker = Checker(where, normalise_trust(trust))
    return {key: checker.node(value[key], key, key) for key in SLOTS if value.get(key) is not None}
