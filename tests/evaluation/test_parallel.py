"""An evaluation spread over processes (eval.py workers=N: one job per model and attack, plus the analyses) gives
the sequential numbers, checks and tables."""

from __future__ import annotations

import pytest
import torch

import afd_lightning
from afd_lightning.config.resolvers import cpu_cores
from afd_lightning.data import DigitsDataModule
from afd_lightning.errors import ConfigError
from afd_lightning.evaluate import run
from afd_lightning.evaluation.attacks import AutoAttackSweep, NormBallAttack
from afd_lightning.evaluation.parallel import (
    CPU_SHARD_SIZE,
    count_jobs,
    join_curves,
    plan_shard_size,
    plan_workers,
    shard_ranges,
    shard_seed,
)
from afd_lightning.evaluation.suite import SuiteSettings, SweepSettings, evaluate_models
from afd_lightning.evaluation.sweep import Curve

from helpers.evaluation import compose_eval

TINY = [
    "attack=pgd_linf",
    "attack.steps=3",
    "attack.eps=[0,0.1,0.3]",
    "n_samples=30",
    "analyses=false",
    "plots=false",
    "threads=1",  # the same thread count in both runs: the numbers are compared bit for bit
]


@pytest.mark.slow
def test_two_checkpoints_in_two_processes_give_the_sequential_results(nt_ckpt, nt2_ckpt, tmp_path):  # noqa: F811
    over = [f"ckpt_path=[{nt_ckpt},{nt2_ckpt}]", "names=[A,B]", *TINY]
    sequential = run(compose_eval([*over, "workers=1"], tmp_path / "seq"))
    parallel = run(compose_eval([*over, "workers=2"], tmp_path / "par"))
    assert list(parallel.models) == list(sequential.models) == ["A", "B"]
    for name, seq in sequential.models.items():
        par = parallel.models[name]
        assert par.clean_accuracy == seq.clean_accuracy
        assert par.attacks.keys() == seq.attacks.keys()
        for attack, curve in seq.attacks.items():
            assert par.attacks[attack].accuracy == curve.accuracy, (name, attack)
        assert [(c.name, c.passed, c.details) for c in par.checks] == [
            (c.name, c.passed, c.details) for c in seq.checks
        ]
        assert par.worst_case == seq.worst_case
    # the side-by-side Table 1 and the checks, as written
    seq_tables = (tmp_path / "seq" / "tables.md").read_text()
    par_tables = (tmp_path / "par" / "tables.md").read_text()
    assert "| A |" in par_tables and "| B |" in par_tables
    assert par_tables.split("Table 2")[0] == seq_tables.split("Table 2")[0]


@pytest.mark.slow
def test_one_checkpoint_its_attacks_and_analyses_in_two_processes(nt_ckpt, nt2_ckpt, tmp_path):  # noqa: F811
    """The default case: one checkpoint, the suite's attacks (and the analyses) spread over the workers."""
    over = [
        f"ckpt_path={nt_ckpt}",
        f"source_ckpt={nt2_ckpt}",
        "suite=quick",
        "n_samples=24",
        "suite.attacks.square.n_queries=20",
        "suite.attacks.apgd_ce.n_iter=5",
        "suite.attacks.pgd_linf.steps=3",
        "shard_size=8",  # APGD-CE and Square in three image shards each, as jobs of their own
        "analyses=true",
        "plots=false",
        "threads=1",
    ]
    sequential = run(compose_eval([*over, "workers=1"], tmp_path / "seq"))
    parallel = run(compose_eval([*over, "workers=2"], tmp_path / "par"))
    (name,) = sequential.models
    seq, par = sequential.models[name], parallel.models[name]
    assert list(par.attacks) == list(seq.attacks)  # the suite's order, whatever order the jobs finished in
    assert {"pgd_linf_bb", "fgsm_bb"} <= set(seq.attacks)  # the transfer attacks ran as jobs too
    for attack, curve in seq.attacks.items():
        assert par.attacks[attack].accuracy == curve.accuracy, attack
    assert [(c.name, c.passed, c.details) for c in par.checks] == [(c.name, c.passed, c.details) for c in seq.checks]
    assert par.worst_case == seq.worst_case
    assert par.saturation == seq.saturation
    assert par.analyses["sparsity"] == seq.analyses["sparsity"]
    assert par.analyses["sensitivity"] == seq.analyses["sensitivity"]
    assert (tmp_path / "par" / "tables.md").read_text() == (tmp_path / "seq" / "tables.md").read_text()


def test_plan_workers():
    assert plan_workers(1, 5, 1) == 1
    assert plan_workers(3, 2, 1) == 2  # never more processes than jobs
    assert plan_workers("auto", 1, "auto") == 1
    assert plan_workers("auto", 64, 1) == cpu_cores()
    assert plan_workers("auto", 64, cpu_cores()) == 1
    for bad in (0, -1, "two", True):
        with pytest.raises(ConfigError, match="workers"):
            plan_workers(bad, 2, 1)


@pytest.mark.slow
def test_a_worker_unpickles_an_advertorch_attack():
    """suite=paper/full hold advertorch classes (C&W); a spawned worker imports advertorch only through the shim.

    Without the pool's initializer this failed with ``cannot import name 'zero_gradients'`` and a broken pool.
    """
    from afd_lightning.evaluation.attacks import AdvertorchMinNorm
    from afd_lightning.evaluation.parallel import worker_pool

    attack = AdvertorchMinNorm(
        "cw", eps=[0, 1], attack_cls="advertorch.attacks.CarliniWagnerL2Attack", num_classes=10, max_iterations=1
    )
    with worker_pool(1) as pool:
        assert pool.submit(getattr, attack, "attack_cls").result(timeout=300) == attack.attack_cls


def _aa_suite():
    """A cheap AutoAttack: APGD-CE (5 iterations, random start) and Square (30 queries, random by nature)."""
    return [
        AutoAttackSweep("apgd_ce", "linf", [0, 0.1, 0.2], version="custom", attacks=["apgd-ce"], n_iter=5),
        AutoAttackSweep(
            "square", "linf", [0, 0.2], version="custom", attacks=["square"], n_queries=30, gradient_free=True
        ),
    ]


@pytest.mark.slow
def test_autoattack_shards_give_the_same_per_sample_results_with_one_or_two_workers(nt_ckpt):  # noqa: F811
    """Issue 29: one model's AutoAttack curve over image shards in worker processes; per sample, the outcome does
    not depend on the number of workers (the shards and their seeds depend on the shard size only)."""
    dm = DigitsDataModule()
    dm.setup("test")
    x, y = dm.test_set.tensors
    x, y = x[:24], y[:24]
    model = afd_lightning.load_classifier(nt_ckpt)

    def run_with(workers: int, shard_size: int | None):
        settings = SuiteSettings(table_eps=0.2, sweep=SweepSettings(shard_size=shard_size), workers=workers)
        return evaluate_models({"NT": model}, x, y, _aa_suite(), settings)["NT"]

    one, two = run_with(1, 8), run_with(2, 8)
    for name in ("apgd_ce", "square"):
        a, b = one.curves[name], two.curves[name]
        assert a.n == b.n == 24
        assert torch.equal(a.robust, b.robust), name  # the per-sample robust mask, at every eps
        assert a.stages.keys() == b.stages.keys() and all(torch.equal(a.stages[k], b.stages[k]) for k in a.stages)
        assert a.attacked == b.attacked
    assert [(c.name, c.passed, c.details) for c in one.checks] == [(c.name, c.passed, c.details) for c in two.checks]
    # the attacks did something on an undefended model, so the comparison above is not of two all-True masks
    assert 0 < one.curves["apgd_ce"].accuracy[1] < one.clean_accuracy  # eps 0.1
    assert 0 < one.curves["square"].accuracy[-1] < one.clean_accuracy
    # one shard (the shard size covers every sample) is the unsharded curve itself
    whole, single = run_with(1, None), run_with(1, 24)
    assert all(torch.equal(whole.curves[k].robust, single.curves[k].robust) for k in whole.curves)


def test_shards_are_fixed_by_the_shard_size_alone():
    aa = _aa_suite()[0]
    pgd = NormBallAttack("pgd_linf", "linf", [0, 0.2], "advertorch.attacks.LinfPGDAttack", steps=2)
    assert shard_ranges(aa, 24, 10) == [(0, 10), (10, 20), (20, 24)]
    assert shard_ranges(aa, 24, None) == shard_ranges(aa, 24, 24) == [(0, 24)]
    assert shard_ranges(pgd, 24, 10) == [(0, 24)]  # no independent_samples: one job per curve
    aa.n_samples = 15
    assert shard_ranges(aa, 24, 10) == [(0, 10), (10, 15)]  # the attack's own sample count first
    assert count_jobs(2, [aa, pgd], 24, 10, extra=1) == 2 * (2 + 1 + 1)
    assert shard_seed(7, 0) == 7 and shard_seed(7, 10) != shard_seed(7, 20) != shard_seed(8, 10)
    assert plan_shard_size("auto", "cpu") == CPU_SHARD_SIZE and plan_shard_size("auto", "cuda") is None
    assert plan_shard_size(None, "cpu") is None and plan_shard_size(30, "cuda") == 30
    for bad in (0, -5, "many", True, 2.5):
        with pytest.raises(ConfigError, match="shard_size"):
            plan_shard_size(bad, "cpu")

    def part(robust, attacked, stage=True):
        robust = torch.tensor(robust)
        stages = {"apgd-ce": robust.clone()} if stage else {}
        return Curve(
            "aa", "linf", [0.0, 0.2], robust, torch.arange(robust.shape[1]), None, attacked, 1.5, stages=stages
        )

    joined = join_curves([part([[True, True], [True, False]], [0, 2]), part([[False], [False]], [0, 0], stage=False)])
    assert joined.robust.tolist() == [[True, True, False], [True, False, False]]
    assert joined.samples.tolist() == [0, 1, 2] and joined.attacked == [0, 2] and joined.seconds == 3.0
    # a shard never attacked has no stage rows: none of its samples is robust there
    assert joined.stages["apgd-ce"].tolist() == [[True, True, False], [True, False, False]]
