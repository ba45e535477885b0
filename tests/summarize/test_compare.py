"""``afd-summarize --compare``: two groups of synthetic runs, their difference, CI and p-values, and its errors.

The runs are folders as train.py and eval.py leave them (``.hydra/config.yaml`` + ``hydra.yaml`` naming the
experiment, ``metrics.json``, and a ``results.json`` built with the schema's dataclasses), with accuracies
chosen so that every number the comparison prints can be worked out by hand.
"""

from __future__ import annotations

import dataclasses
import json
import statistics

import pytest
import torch
import yaml
from omegaconf import OmegaConf
from scipy import stats as scipy_stats

from afd_lightning.attacks import attack_mode
from afd_lightning.evaluation.attacks import NormBallAttack
from afd_lightning.evaluation.report.schema import CurveRecord, EvaluationResults, ModelRecord, WorstCase
from afd_lightning.evaluation.sweep import Curve, predict, run_curve
from afd_lightning.run import provenance
from afd_lightning.run.provenance import Provenance
from afd_lightning.summarize import cli as summarize
from afd_lightning.summarize.compare import NOT_PAIRED, CompareError, Selector, compare
from afd_lightning.summarize.discovery import attach_evaluations, find_runs

from helpers.compose import compose_train

N = 40  # test images per evaluation
EXPERIMENTS = {"AFD": "paper_digits_afd", "AT": "paper_digits_at"}


@pytest.fixture(scope="module")
def configs():
    """One composed config per method (composing is the slow part; seeds are set per run)."""
    return {m: OmegaConf.to_container(compose_train([f"experiment={e}"])) for m, e in EXPERIMENTS.items()}


@pytest.fixture(scope="module")
def record():
    return provenance.collect(seed=0, argv=["train.py"]).to_json()


def _flags(n_true: int, n: int = N) -> list[bool]:
    return [i < n_true for i in range(n)]


def _model(clean: list[bool], pgd: list[bool], aa: list[bool], per_image: bool = True) -> ModelRecord:
    """A model whose PGD-L∞ and AutoAttack curves at eps 0 and 0.2 hold these per-image outcomes."""

    def curve(name: str, robust: list[bool]) -> CurveRecord:
        assert all(c or not r for c, r in zip(clean, robust))  # robust only where clean-correct
        through = "".join(str(int(c) + int(r)) for c, r in zip(clean, robust))
        n = len(clean)
        return CurveRecord(
            name,
            "linf",
            [0.0, 0.2],
            [sum(clean) / n, sum(robust) / n],
            n,
            name,
            robust_through=through if per_image else "",
        )

    worst = [p and a for p, a in zip(pgd, aa)]
    return ModelRecord(
        sum(clean) / len(clean),
        len(clean),
        attacks={"pgd_linf": curve("pgd_linf", pgd), "autoattack": curve("autoattack", aa)},
        worst_case=WorstCase(0.2, sum(worst) / len(clean), len(clean), ["pgd_linf", "autoattack"]),
    )


def _run(root, configs, record, method, seed, model, indices=None, test_adv=0.5):
    """A run folder (config, hydra.yaml with the experiment, metrics.json) with its results.json inside."""
    run_dir = root / f"{method.lower()}_{seed}"
    (run_dir / ".hydra").mkdir(parents=True)
    cfg = dict(configs[method], seed=seed)
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    choices = {"experiment": EXPERIMENTS[method]}
    (run_dir / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}}))
    metrics = {"test/acc_clean": 0.98, "test/acc_adv": test_adv, "provenance": record}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    results = EvaluationResults(
        complete=True,
        dataset="digits",
        family="digits",
        table_eps=0.2,
        n_samples=N,
        test_set_size=360,
        seed=0,
        sweep_mode="survivors",
        device="cpu",
        sample_indices=list(range(100, 100 + N)) if indices is None else indices,
        models={"model": model},
        provenance=Provenance.from_json(record),
    )
    (run_dir / "results.json").write_text(json.dumps(results.to_json()))
    return run_dir


@pytest.fixture(scope="module")
def tree(tmp_path_factory, configs, record):
    """AFD (3 seeds) against AT (3 seeds): on each seed's 40 images AT's PGD keeps 3 images AFD loses."""
    root = tmp_path_factory.mktemp("compare")
    clean = _flags(38)
    afd_pgd = {0: 20, 1: 22, 2: 21}  # robust images under PGD, out of 40 (the first k)
    at_pgd = {0: 23, 1: 25, 2: 24}
    for seed in (0, 1, 2):
        afd = _flags(afd_pgd[seed])
        _run(root, configs, record, "AFD", seed, _model(clean, afd, _flags(afd_pgd[seed] - 2)), test_adv=0.5)
        at = _flags(at_pgd[seed])
        _run(root, configs, record, "AT", seed, _model(clean, at, _flags(at_pgd[seed] - 1)), test_adv=0.6)
    return root, afd_pgd, at_pgd


@pytest.mark.slow
def test_difference_ci_and_both_p_values(tree, tmp_path, capsys):
    root, afd_pgd, at_pgd = tree
    code = summarize.main(
        [str(root), "--out", str(tmp_path), "--compare", "method=AFD,recipe=paper_digits_afd", "method=at"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    data = json.loads((tmp_path / "compare.json").read_text())
    assert data["format"] == "afd-compare/1" and data["provenance"]["commit"] == provenance.collect().commit
    assert data["group_a"]["seeds"] == [0, 1, 2] and data["group_b"]["recipes"] == ["paper_digits_at"]
    assert data["group_a"]["runs"] == ["afd_0", "afd_1", "afd_2"]
    pgd = next(m for m in data["metrics"] if m["metric"] == "pgd_linf")
    a = [100 * afd_pgd[s] / N for s in (0, 1, 2)]  # 50, 55, 52.5
    b = [100 * at_pgd[s] / N for s in (0, 1, 2)]  # 57.5, 62.5, 60
    assert (pgd["n_a"], pgd["n_b"]) == (3, 3)
    assert pgd["difference"] == pytest.approx(statistics.fmean(a) - statistics.fmean(b)) == pytest.approx(-7.5)
    # equal spreads, equal n: Welch's t is the pooled t, -7.5 / sqrt(2 * 6.25 / 3), on 4 degrees of freedom
    t = -7.5 / (2 * 6.25 / 3) ** 0.5
    assert pgd["welch"]["t"] == pytest.approx(t) and pgd["welch"]["df"] == pytest.approx(4.0)
    assert pgd["welch"]["p"] == pytest.approx(2 * scipy_stats.t.cdf(t, 4)) and pgd["welch"]["test"] == "welch_t"
    ci = pgd["bootstrap"]
    assert ci["low"] < -7.5 < ci["high"] < 0 and (ci["seed"], ci["resamples"], ci["test"]) == (0, 9999, "bootstrap")
    # paired: on every seed AT keeps 3 images AFD loses and none the other way: 0 vs 9, p = 2 / 2**9
    m = pgd["mcnemar"]
    assert (m["only_a"], m["only_b"], m["pairs"], m["test"]) == (0, 9, 3 * N, "mcnemar_exact")
    assert m["p"] == pytest.approx(2 / 512) and pgd["paired_seeds"] == [0, 1, 2] and pgd["paired_note"] == ""
    # AutoAttack: AFD keeps k - 2, AT k - 1: 4 images a seed; worst case = AA here; clean is equal: p = 1
    aa = next(m for m in data["metrics"] if m["metric"] == "autoattack")
    assert aa["difference"] == pytest.approx(-10.0) and aa["mcnemar"]["only_b"] == 12
    worst = next(m for m in data["metrics"] if m["metric"] == "worst_case")
    assert worst["mcnemar"]["only_b"] == 12 and worst["mcnemar"]["p"] == aa["mcnemar"]["p"]
    clean = next(m for m in data["metrics"] if m["metric"] == "clean")
    assert clean["difference"] == 0 and clean["mcnemar"]["p"] == 1.0 and clean["welch"]["p"] is None
    # the training run's own test PGD: no per-image records
    train = next(m for m in data["metrics"] if m["metric"] == "test/acc_adv")
    assert (
        train["difference"] == pytest.approx(-10.0) and train["mcnemar"] is None and train["paired_note"] == NOT_PAIRED
    )
    # printed and written as markdown, the selectors as code
    md = (tmp_path / "compare.md").read_text()
    assert md in printed + "\n" and "`method=AFD,recipe=paper_digits_afd`" in md
    assert "| PGD-L∞ (WB) | 52.50 (n=3) | 60.00 (n=3) | -7.50 |" in md and "0 vs 9 of 120 images" in md
    assert (tmp_path / "summary.json").is_file()  # the summary is written as always


def test_the_same_runs_give_the_same_file(tree, tmp_path):
    root, _, _ = tree
    outs = []
    for out in ("one", "two"):
        summarize.run(
            root, tmp_path / out, compare=(Selector.parse("method=AFD"), Selector.parse("recipe=paper_digits_at"))
        )
        data = json.loads((tmp_path / out / "compare.json").read_text())
        data.pop("provenance")  # its wall time differs
        outs.append(data)
    assert outs[0] == outs[1]


def test_old_results_without_per_image_records(tmp_path, configs, record):
    clean = _flags(38)
    for seed in (0, 1):
        _run(tmp_path, configs, record, "AFD", seed, _model(clean, _flags(20 + seed), _flags(18), per_image=False))
        _run(tmp_path, configs, record, "AT", seed, _model(clean, _flags(24 - seed), _flags(20), per_image=False))
    runs = find_runs(tmp_path)
    attach_evaluations(tmp_path, runs)
    c = compare(runs, Selector.parse("method=AFD"), Selector.parse("method=AT"))
    pgd = c.metric("pgd_linf")
    assert pgd is not None and pgd.mcnemar is None and pgd.paired_note == "not available (no per-image records)"
    assert pgd.difference == pytest.approx(100 * (20.5 - 23.5) / N) and pgd.welch.p is not None


def test_pairs_are_matched_by_seed_and_test_image(tmp_path, configs, record):
    """B's evaluation saw other images in another order: only the shared ones pair; an unpaired seed is left out."""
    clean = _flags(N)
    _run(tmp_path, configs, record, "AFD", 0, _model(clean, _flags(10), _flags(10)))
    _run(tmp_path, configs, record, "AFD", 5, _model(clean, _flags(30), _flags(30)))  # no AT seed 5
    # AT seed 0 on test images 120..159 (20 shared with AFD's 100..139), reversed: image 159 first
    at_indices = list(range(159, 119, -1))
    robust = [i >= 140 or i < 125 for i in at_indices]  # among the shared 120..139: robust on 120..124 only
    _run(tmp_path, configs, record, "AT", 0, _model(clean, robust, robust), indices=at_indices)
    runs = find_runs(tmp_path)
    attach_evaluations(tmp_path, runs)
    pgd = compare(runs, Selector.parse("method=AFD"), Selector.parse("method=AT")).metric("pgd_linf")
    # AFD seed 0 is robust on images 100..109 only: of the shared 120..139 it keeps none, AT keeps 120..124
    assert pgd is not None and pgd.mcnemar is not None and pgd.paired_seeds == [0]
    assert (pgd.mcnemar.only_a, pgd.mcnemar.only_b, pgd.mcnemar.pairs) == (0, 5, 20)


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        ("method", "method=AT", "is not key=value"),
        ("lr=0.1", "method=AT", "is not key=value with a key among method, recipe"),
        ("method=AFD,method=AT", "method=AT", "method is given twice"),
        ("seed=first", "method=AT", "is not an integer"),
        ("", "method=AT", "an empty selector"),
        ("method=MATCH", "method=AT", "group A (method=MATCH) matches none of the 6 runs"),
        ("method=AFD", "seed=0", "match both groups"),
    ],
)
def test_selector_errors_are_one_line(tree, tmp_path, capsys, a, b, message):
    root, _, _ = tree
    assert summarize.main([str(root), "--out", str(tmp_path), "--compare", a, b]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --compare") and message in err and "\n" not in err
    assert not (tmp_path / "compare.json").exists() and not (tmp_path / "summary.json").exists()


def test_selector_terms():
    s = Selector.parse("recipe=digits_afd method.lr=0.1,trainer.x=1, method=afd,seed=2")
    assert s.terms == (("recipe", "digits_afd method.lr=0.1,trainer.x=1"), ("method", "afd"), ("seed", "2"))
    with pytest.raises(CompareError):
        Selector.parse("network=")


def test_the_sweep_records_which_images_each_attack_left(tmp_path):
    """eval's records carry per-image outcomes the comparison can read back, and older files still load."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    x = torch.rand(30, 1, 8, 8)
    y = model(x).argmax(1)
    y[:4] = (y[:4] + 1) % 10  # four clean mistakes; FGSM breaks the rest step by step
    attack = NormBallAttack("fgsm", "linf", [0.0, 0.05, 0.2, 0.4], "advertorch.attacks.GradientSignAttack")
    with attack_mode(model):
        correct = predict(model, x, 500) == y
        curve = run_curve(model, attack, x, y, correct)
    rec = ModelRecord(float(correct.float().mean()), 30, attacks={"fgsm": curve.to_record()})  # as suite.py does
    assert len(rec.attacks["fgsm"].robust_through) == 30
    assert len(set(rec.attacks["fgsm"].robust_through)) >= 3  # images that fall at different eps
    for k, eps in enumerate(curve.eps):
        assert rec.attacks["fgsm"].robust_at(eps) == "".join("1" if r else "0" for r in curve.robust[k].tolist())
    per_image = rec.robust_at(0.2)
    assert per_image["clean"] == "".join("1" if c else "0" for c in correct.tolist())
    assert per_image["fgsm"].count("1") == round(curve.accuracy_at(0.2) * 30)
    # round trip, and a file written before the field existed
    data = dataclasses.asdict(rec.attacks["fgsm"])
    assert CurveRecord.from_json(data) == rec.attacks["fgsm"]
    old = {k: v for k, v in data.items() if k != "robust_through"}
    assert CurveRecord.from_json(old).robust_at(0.2) is None and ModelRecord(0.5, 30).robust_at(0.2) == {}
    # a curve that rises with eps (an independent sweep) cannot be one count per image: no record
    rising = Curve("x", "linf", [0.0, 0.1], torch.tensor([[True, False], [True, True]]), torch.arange(2))
    assert rising.robust_through() == ""
    falling = Curve("y", "linf", [0.0, 0.1], torch.tensor([[True, True], [False, True]]), torch.arange(2))
    assert falling.robust_through() == "12"
