"""Answers for a key that does not exist: the closest candidate, and the arguments a ``_target_`` takes (a leaf)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(option: str, key: str, candidates: Iterable[str]) -> str:
    """``"no option trainer.max_epoch; did you mean max_epochs?"`` (difflib's closest candidate, if any)."""
    close = difflib.get_close_matches(key, sorted(set(candidates) - {key}), n=1, cutoff=0.6)
    prefix = option[: len(option) - len(key)] if option.endswith(key) else ""
    return f"no option {option}" + (f"; did you mean {prefix}{close[0]}?" if close else "")


def signature_keys(target: str) -> tuple[list[str], bool] | None:
    """(argument names, takes **kwargs) of the callable ``target`` names; None when it cannot be imported."""
    import inspect

    from hydra.utils import get_object

    try:
        obj = get_object(target)
        # A class whose __init__ passes **kwargs on to its base takes the base's arguments too (TRADES -> RobustMethod).
        inits = (
            [vars(c)["__init__"] for c in inspect.getmro(obj) if "__init__" in vars(c)]
            if inspect.isclass(obj)
            else [obj]
        )
        names, var_kw = [], True
        for fn in inits:
            params = inspect.signature(fn).parameters
            names += [n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and n != "self"]
            var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
            if not var_kw:
                break
    except (ImportError, AttributeError, ValueError, TypeError):
        return None
    return names, var_kw
