"""The evaluation results schema: the one owner of what ``results.json`` holds.

The suite writes these dataclasses; tables, figures, checks' report, W&B and users' tools read
them (``EvaluationResults.load(path)``), never a dict whose keys each reader guesses.
``to_json`` / ``from_json`` round-trip exactly (tested).  Every curve keeps its ``attack``,
``norm``, ``eps`` and ``accuracy`` fields, which other tools read.

``schema_version`` history: 1 (implicit, no field): the first eval.py; 2: typed schema, checks'
``details`` (was ``detail``), Wilson intervals, AutoAttack breakdown, worst case, saturation,
no AUC for single-ε attacks; later, with defaults so older files still read: ``ModelRecord.diagnostics``
(attack diagnostics), ``p_one_fraction``, ``grad_below_fraction``, ``pgd_aa_gap``, ``CurveRecord.robust_through``
(which samples each attack left standing at each ε: the paired per-image test of ``afd-summarize --compare``).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from afd_lightning.files.reader import UnreadableFileError, read_json
from afd_lightning.run.provenance import Provenance

SCHEMA_VERSION = 2


def eps_index(eps: Sequence[float], at: float) -> int | None:
    """Where ``at`` stands in a curve's ``eps`` (None if it is not there): the one place ε values are compared."""
    return next((k for k, e in enumerate(eps) if math.isclose(e, at, rel_tol=1e-6, abs_tol=1e-9)), None)


def accuracy_at(eps: Sequence[float], accuracy: Sequence[float], at: float) -> float | None:
    """The accuracy a curve measured at ``at`` (None if that ε is not on the curve)."""
    k = eps_index(eps, at)
    return accuracy[k] if k is not None and k < len(accuracy) else None


R = TypeVar("R", bound="Record")


class Record:
    """A record of the schema: ``from_json`` reads any of them, nested records included, from the field types."""

    @classmethod
    def from_json(cls: type[R], data: dict) -> R:
        """The record from its ``dataclasses.asdict`` form; a field the schema does not know is refused."""
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown fields {sorted(unknown)} (schema_version {SCHEMA_VERSION})")
        if cls not in _FIELD_TYPES:
            _FIELD_TYPES[cls] = typing.get_type_hints(cls)
        hints = _FIELD_TYPES[cls]
        return cls(**{k: _read(hints[k], v) for k, v in data.items()})


_FIELD_TYPES: dict[type, dict[str, Any]] = {}  # each record class's field types, resolved once


def _read(tp: Any, value: Any) -> Any:
    """``value`` (plain JSON) as the annotated type ``tp``: records, and lists, dicts and optionals of them."""
    if value is None:
        return None
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _read(inner[0], value) if len(inner) == 1 else value
    if origin is list and args:
        return [_read(args[0], v) for v in value]
    if origin is dict and len(args) == 2:
        return {k: _read(args[1], v) for k, v in value.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return tp.from_json(value)  # type: ignore[attr-defined]
    return value


@dataclass
class CurveRecord(Record):
    """One attack's accuracy-vs-ε curve on one model (accuracies are fractions of ``n_samples``).

    ``auc`` is None for an attack run at a single ε > 0 (a two-point "area" means nothing).
    ``ci_low``/``ci_high``: 95% Wilson interval at each ε.  ``breakdown``: for AutoAttack, the
    accuracy after each of its attacks in turn (``{"apgd-ce": [...], "apgd-t": [...], ...}``).
    """

    attack: str
    norm: str
    eps: list[float]
    accuracy: list[float]
    n_samples: int
    label: str = ""
    kind: str = "norm_ball"
    auc: float | None = None
    ci_low: list[float] = field(default_factory=list)
    ci_high: list[float] = field(default_factory=list)
    attacked_per_eps: list[int] = field(default_factory=list)
    seconds: float = 0.0
    sweep_mode: str = "survivors"
    median_min_norm: float | None = None
    attack_failed: int | None = None
    breakdown: dict[str, list[float]] | None = None
    # Per sample, in ``sample_indices`` order: through how many of ``eps`` (from the first) it stayed robust, one
    # base-36 digit each ("0": wrong or broken at eps[0]; len(eps): robust at every eps). One character per
    # sample holds the whole curve because robustness only falls with ε in a survivors sweep; empty where it
    # does not (an independent sweep), for more than 35 points, and in files made before it was recorded.
    robust_through: str = ""

    def accuracy_at(self, eps: float) -> float | None:
        return accuracy_at(self.eps, self.accuracy, eps)

    def robust_at(self, eps: float) -> str | None:
        """'1'/'0' per sample (``sample_indices`` order): robust at ``eps``; None where not recorded or measured."""
        k = eps_index(self.eps, eps)
        if k is None or not self.robust_through:
            return None
        return "".join("1" if int(c, 36) > k else "0" for c in self.robust_through)


@dataclass
class CheckResult(Record):
    """One honesty check: ``passed`` True, False, or None (n/a: it cannot fail on this suite or sweep)."""

    name: str
    passed: bool | None
    details: str
    numbers: dict = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return {True: "pass", False: "FAIL", None: "n/a"}[self.passed]


@dataclass
class WorstCase(Record):
    """Per sample, robust only if every L∞ attack that ran at ``eps`` on all samples failed: the robust accuracy."""

    eps: float
    accuracy: float
    n_samples: int
    attacks: list[str]
    ci_low: float = 0.0
    ci_high: float = 1.0
    broken_by: dict[str, int] = field(default_factory=dict)  # samples only this attack broke


@dataclass
class ModelRecord(Record):
    """Everything measured on one model."""

    clean_accuracy: float
    n_samples: int
    checkpoint: str | None = None
    attacks: dict[str, CurveRecord] = field(default_factory=dict)
    checks: list[CheckResult] = field(default_factory=list)
    worst_case: WorstCase | None = None
    saturation: dict[str, Any] | None = None
    analyses: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    # Comparisons across attack classes (embedding vs label loss, an overshooting single step): about the
    # attacks, not the model; shown apart and never counted as a failed check (evaluation/checks/checker.py).
    diagnostics: list[CheckResult] = field(default_factory=list)
    # Saturation per run, over all n_samples: p(y) = 1.0 in float32; ‖∇ₓ CE‖₂ below saturation["grad_threshold"].
    p_one_fraction: float | None = None
    grad_below_fraction: float | None = None
    # PGD-L∞ minus AutoAttack accuracy at the table ε (fractions), where both ran on every sample.
    pgd_aa_gap: float | None = None

    def robust_at(self, eps: float) -> dict[str, str]:
        """'1'/'0' per sample (``sample_indices`` order) for every L∞ attack recorded at ``eps``, ``"clean"``, and
        ``"worst_case"`` where every attack of the worst case is recorded at its ε.

        The paired records of ``afd-summarize --compare``; empty for files made before ``robust_through``.
        """
        out = {}
        for name, curve in self.attacks.items():
            clean = curve.robust_at(0.0)
            if "clean" not in out and clean is not None and curve.kind == "norm_ball" and len(clean) == self.n_samples:
                out["clean"] = clean
            robust = curve.robust_at(eps) if curve.norm == "linf" else None
            if robust is not None:
                out[name] = robust
        worst = self.worst_case
        recorded = worst is not None and worst.attacks and all(a in out for a in worst.attacks)
        if worst is not None and recorded and math.isclose(worst.eps, eps):
            rows = [out[a][: worst.n_samples] for a in worst.attacks]
            out["worst_case"] = "".join("1" if all(r[i] == "1" for r in rows) else "0" for i in range(len(rows[0])))
        return out

    def failed_checks(self) -> list[CheckResult]:
        """The model checks that failed (attack diagnostics are not model failures)."""
        return [c for c in self.checks if c.passed is False]


@dataclass
class AttackInfo(Record):
    """An attack of the suite as configured: what the tables' headers and the figures' panels need, plus its settings."""

    name: str
    kind: str
    norm: str
    label: str
    eps: list[float]
    auc_table: bool = True
    gradient_free: bool = False
    settings: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_describe(cls, d: dict) -> AttackInfo:
        d = dict(d)
        main = {k: d.pop(k) for k in ("name", "kind", "norm", "label", "eps")}
        return cls(
            **main,
            auc_table=bool(d.pop("auc_table", True)),
            gradient_free=bool(d.pop("gradient_free", False)),
            settings=d,
        )


@dataclass
class EvaluationResults(Record):
    """The whole evaluation: ``results.json`` (complete) or ``results.partial.json`` (while running)."""

    complete: bool
    dataset: str | None
    family: str
    table_eps: float
    n_samples: int
    test_set_size: int
    seed: int
    sweep_mode: str
    device: str
    checkpoints: dict[str, str] = field(default_factory=dict)
    source: str | None = None
    sample_indices: list[int] = field(default_factory=list)
    attacks: list[AttackInfo] = field(default_factory=list)
    models: dict[str, ModelRecord] = field(default_factory=dict)
    created: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    plots: dict[str, str] = field(default_factory=dict)
    # Code, versions, threads, device, seed, command, wall time (afd_lightning.run.provenance); None in older files.
    provenance: Provenance | None = None
    schema_version: int = SCHEMA_VERSION

    def attack(self, name: str) -> AttackInfo | None:
        return next((a for a in self.attacks if a.name == name), None)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> EvaluationResults:
        version = data.get("schema_version", 1)
        if version != SCHEMA_VERSION:
            raise ValueError(f"results schema_version {version} is not {SCHEMA_VERSION}: re-run eval.py to rewrite it")
        return super().from_json(data)

    @classmethod
    def load(cls, path: str | Path) -> EvaluationResults:
        data = read_json(path, what="evaluation results")
        if not isinstance(data, dict):
            raise UnreadableFileError(f"evaluation results {path} is not a JSON object; it was not written by afd-eval")
        return cls.from_json(data)
