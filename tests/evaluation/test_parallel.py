"""An evaluation spread over processes (eval.py workers=N: one job per model and attack, plus the analyses) gives
the sequential numbers, checks and tables."""

from __future__ import annotations

import pytest

from afd_lightning.config.resolvers import cpu_cores
from afd_lightning.errors import ConfigError
from afd_lightning.evaluate import run
from afd_lightning.evaluation.parallel import plan_workers

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
