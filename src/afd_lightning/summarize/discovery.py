"""Finding the training runs and evaluations below a folder, each file read through the one reader.

A folder given to ``afd-summarize`` may hold anything: every file is read with
:mod:`afd_lightning.files.reader` (regular files only, size, depth and node caps, YAML without aliases),
the walk does not follow links and is bounded in depth and in entries, and a run or an evaluation that
cannot be read is skipped with one warning line naming it; the others are summarised.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from afd_lightning.config import run_config
from afd_lightning.errors import AFDUserError
from afd_lightning.evaluation.report.tables import TABLE1_COLUMNS
from afd_lightning.files.reader import is_regular_file, read_json, read_yaml
from afd_lightning.store import stored_config

log = logging.getLogger(__name__)

# Bounds of the walk: a sweep is a few levels deep and holds at most some thousands of runs.
MAX_WALK_DEPTH = 12
MAX_WALK_ENTRIES = 500_000
# The records we read are small: a results.json of many models is a few MB.
MAX_RECORD_BYTES = 50_000_000
MAX_STRING = 300  # a recipe, dataset or network name longer than this is not one of ours

# Columns: (key, header). Evaluation columns come from results.json at its Table 1 eps; the last two
# from the training run's own test pass (metrics.json: the dataset's PGD, conf/train/attack/pgd_linf_eval.yaml).
EVAL_COLUMNS = [
    ("clean", "Clean"),
    *((key, header) for header, key in TABLE1_COLUMNS),  # the evaluation's Table 1 columns
    ("apgd_ce", "APGD-CE"),
    ("square", "Square"),
    ("autoattack", "AA"),
    ("aa_apgd_ce", "AA's APGD-CE"),  # AutoAttack's first stage alone (its breakdown): CE with APGD's step size
    # the adaptive suite's fixed-step PGD with other losses (conf/eval/suite/adaptive.yaml)
    ("pgd_margin", "PGD-margin"),
    ("pgd_dlr", "PGD-DLR"),
    ("pgd_embedding", "PGD-embedding"),
    ("pgd_targeted", "PGD-targeted"),
    ("worst_case", "Worst case"),
    # saturation per run (results.json, over the evaluated samples, in %) and PGD-L∞ − AA (points)
    ("p_one", "p(y) = 1.0"),
    ("grad_below", "‖∇ₓ CE‖ < 1e-8"),
    ("pgd_aa_gap", "PGD − AA"),
]
SATURATION_FIELDS = {"p_one": "p_one_fraction", "grad_below": "grad_below_fraction", "pgd_aa_gap": "pgd_aa_gap"}
TRAIN_COLUMNS = [("test/acc_clean", "train.py test clean"), ("test/acc_adv", "train.py test PGD")]

NETWORKS = {
    "resnet5": "RN5",
    "resnet18": "RN18",
    "preact_resnet18": "PreAct-RN18",
    "wide_resnet34_10": "WRN-34-10",
    "wide_resnet": "WRN",
    "lenet": "LeNet",
}


class MalformedRecordError(AFDUserError):
    """A run's or an evaluation's file holds something other than what our entry points write."""


@dataclass
class Run:
    path: Path
    recipe: str
    method: str
    dataset: str
    family: str | None
    network: str
    seed: int | None
    values: dict[str, float] = field(default_factory=dict)  # column key -> accuracy in %
    provenance: dict | None = None  # metrics.json's (afd_lightning.run.provenance); None: made before it was recorded
    eval_provenance: dict[str, dict | None] = field(default_factory=dict)  # results.json path -> its provenance
    name: str = ""  # the run folder relative to the summarised root (what summary.json records)
    # column key -> {test-set index: correct/robust at the table eps}, from results.json's per-sample records
    # (CurveRecord.robust_through; none in older files): the paired test of afd-summarize --compare
    per_image: dict[str, dict[int, bool]] = field(default_factory=dict)


def walk_files(root: Path, name: str) -> list[Path]:
    """Every regular file called ``name`` below ``root``, sorted; links (files or folders) are not followed."""
    found, entries = [], 0
    root_depth = len(root.parts)
    for folder, dirs, files in os.walk(root, followlinks=False):
        here = Path(folder)
        entries += len(dirs) + len(files)
        if entries > MAX_WALK_ENTRIES:
            raise MalformedRecordError(f"{root} holds more than {MAX_WALK_ENTRIES:,} entries; pass a smaller folder")
        if len(here.parts) - root_depth >= MAX_WALK_DEPTH:
            dirs[:] = []
        dirs.sort()
        if name in files and is_regular_file(here / name):
            found.append(here / name)
    return sorted(found)


def _text(value: Any, where: str, default: str = "?") -> str:
    """A name from a file, as a short single-line string (anything else is refused)."""
    if value is None:
        return default
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise MalformedRecordError(f"{where} is a {type(value).__name__}, not a name")
    text = str(value)
    if len(text) > MAX_STRING or not text.isprintable():
        raise MalformedRecordError(f"{where} is not a short printable name ({len(text)} characters)")
    return text


def _mapping(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MalformedRecordError(f"{where} is a {type(value).__name__}, not a mapping")
    return value


def _recipe(run_dir: Path, cfg: dict) -> str:
    hydra_dir = run_dir / ".hydra"
    choices: dict = {}
    overrides: list = []
    if (hydra_dir / "hydra.yaml").exists():
        hydra = _mapping(read_yaml(hydra_dir / "hydra.yaml", what="run record"), "hydra.yaml")
        runtime = _mapping(_mapping(hydra.get("hydra"), "hydra.yaml: hydra").get("runtime"), "hydra.runtime")
        choices = _mapping(runtime.get("choices"), "hydra.yaml: hydra.runtime.choices")
    if (hydra_dir / "overrides.yaml").exists():
        overrides = read_yaml(hydra_dir / "overrides.yaml", what="run record") or []
        if not isinstance(overrides, list):
            raise MalformedRecordError(f"{hydra_dir / 'overrides.yaml'} is not a list of overrides")
    method = _mapping(cfg.get("method"), "config.yaml: method")
    base = _text(
        choices.get("experiment") or choices.get("method") or method.get("_target_"), "the run's experiment or method"
    )
    extra = []
    for item in overrides:
        override = _text(item, f"{hydra_dir / 'overrides.yaml'}: an override")
        key = override.lstrip("+~").partition("=")[0]
        # the dataset is a grouping key of its own; method=<base> repeats the base
        if not run_config.is_recipe_override(override) or key == "dataset" or override == f"method={base}":
            continue
        extra.append(override)
    return " ".join([base, *sorted(extra)])


def run_from(run_dir: Path) -> Run:
    """The run in ``run_dir`` (``metrics.json`` and ``.hydra/config.yaml`` read through the one reader)."""
    cfg = _mapping(read_yaml(run_dir / ".hydra" / "config.yaml", what="run config"), "config.yaml")
    cfg = run_config.with_dataset_family(cfg)
    metrics = _mapping(read_json(run_dir / "metrics.json", MAX_RECORD_BYTES, "run metrics"), "metrics.json")
    dataset = _mapping(cfg.get("dataset"), "config.yaml: dataset")
    meta = _mapping(dataset.get("meta"), "config.yaml: dataset.meta")
    model = _text(_mapping(cfg.get("model"), "config.yaml: model").get("_target_"), "config.yaml: model._target_")
    model = model.rpartition(".")[2]
    seed = cfg.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise MalformedRecordError(f"config.yaml: seed is {seed!r}, not an integer")
    provenance = metrics.get("provenance")
    run = Run(
        path=run_dir,
        recipe=_recipe(run_dir, cfg),
        method=_text(stored_config.method_name(cfg), "the run's method"),
        dataset=_text(meta.get("name"), "config.yaml: dataset.meta.name"),
        family=None if meta.get("family") is None else _text(meta.get("family"), "dataset.meta.family"),
        network=NETWORKS.get(model, model),
        seed=seed,
        provenance=provenance if isinstance(provenance, dict) else None,
    )
    for key, _ in TRAIN_COLUMNS:
        value = metrics.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            run.values[key] = 100 * float(value)
    return run


def find_runs(root: Path) -> list[Run]:
    """Every training run below ``root`` (``metrics.json`` + ``.hydra/config.yaml``), sorted by path.

    A run whose files cannot be read as ours is skipped with one warning line naming it.
    """
    runs = []
    for metrics in walk_files(root, "metrics.json"):
        if not is_regular_file(metrics.parent / ".hydra" / "config.yaml"):
            continue
        try:
            run = run_from(metrics.parent)
            run.name = metrics.parent.relative_to(root).as_posix()
            runs.append(run)
        except (AFDUserError, ValueError, TypeError, AttributeError) as err:
            log.warning("skipping run %s: %s", metrics.parent, str(err).splitlines()[0])
    return runs


def read_evaluation(path: Path) -> tuple[float, dict[str, dict], dict | None]:
    """``(table_eps, {model: {"checkpoint": str | None, "clean": %, column: % at table_eps, "per_image": {...}}},
    provenance)``; ``per_image``: :attr:`Run.per_image` of that model (empty in files without per-sample records).

    Through the evaluation's typed schema (:mod:`afd_lightning.evaluation.report.schema`); a file it cannot
    read is refused (:class:`MalformedRecordError`), never guessed at.
    """
    from afd_lightning.evaluation.report.schema import EvaluationResults, accuracy_at

    data = read_json(path, MAX_RECORD_BYTES, "evaluation results")
    try:
        results = EvaluationResults.from_json(data)
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise MalformedRecordError(f"{path} is not an evaluation results.json of ours ({err})") from err
    eps = results.table_eps
    out = {}
    for name, m in results.models.items():
        row: dict[str, Any] = {"checkpoint": m.checkpoint}
        if m.clean_accuracy is not None:
            row["clean"] = 100 * float(m.clean_accuracy)
        for key, _ in EVAL_COLUMNS[1:]:
            if key in m.attacks:
                hit = accuracy_at(m.attacks[key].eps, m.attacks[key].accuracy, eps)
                if hit is not None:
                    row[key] = 100 * float(hit)
        aa = m.attacks.get("autoattack")
        stage = (aa.breakdown or {}).get("apgd-ce") if aa is not None else None
        if aa is not None and isinstance(stage, list) and len(stage) == len(aa.eps):
            hit = accuracy_at(aa.eps, stage, eps)
            if hit is not None:
                row["aa_apgd_ce"] = 100 * float(hit)
        worst = m.worst_case
        if worst is not None and math.isclose(float(worst.eps), eps) and len(worst.attacks) > 1:
            row["worst_case"] = 100 * float(worst.accuracy)
        for key, record_field in SATURATION_FIELDS.items():
            value = getattr(m, record_field, None)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                row[key] = 100 * float(value)
        row["per_image"] = _per_image(path, results.sample_indices, m.robust_at(eps), row)
        out[name] = row
    made_with = results.provenance.to_json() if results.provenance is not None else None
    return eps, out, made_with


def _per_image(path: Path, indices: Any, bits: dict[str, str], row: dict) -> dict[str, dict[int, bool]]:
    """{column: {test-set index: robust}} for the columns of ``row`` that have per-sample records."""
    if not bits:
        return {}
    if not isinstance(indices, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in indices):
        raise MalformedRecordError(f"{path}: sample_indices is not a list of integers")
    out = {}
    for key, flags in bits.items():
        if key in row:
            if len(flags) > len(indices):
                raise MalformedRecordError(f"{path}: {key}'s per-sample record is longer than sample_indices")
            out[key] = {i: f == "1" for i, f in zip(indices, flags)}
    return out


def attach_evaluations(root: Path, runs: list[Run]) -> int:
    """Put each evaluated model's numbers on its run; returns how many were matched.

    An evaluation that cannot be read is skipped with one warning line naming it.
    """
    by_dir = {r.path.resolve(): r for r in runs}
    matched = 0
    for path in walk_files(root, "results.json"):
        try:
            _, models, made_with = read_evaluation(path)
        except (AFDUserError, ValueError, TypeError) as err:
            log.warning("skipping evaluation %s: %s", path, str(err).splitlines()[0])
            continue
        for name, row in models.items():
            run = None
            ckpt = row.pop("checkpoint", None)
            candidates = [Path(ckpt), path.parent / ckpt] if isinstance(ckpt, str) and ckpt else []
            for c in candidates:
                run = next((by_dir[p] for p in c.resolve().parents if p in by_dir), None)
                if run:
                    break
            if run is None and len(models) == 1:  # results.json inside the run folder it evaluated
                run = next((by_dir[p] for p in path.resolve().parents if p in by_dir), None)
            if run is None:
                log.warning("%s: model %r matches no run below %s", path, _short(name), root)
                continue
            run.per_image.update(row.pop("per_image", {}))
            run.values.update(row)
            run.eval_provenance[path.relative_to(root).as_posix()] = made_with
            matched += 1
    return matched


def _short(text: str) -> str:
    return text if len(text) <= 80 else text[:77] + "..."
