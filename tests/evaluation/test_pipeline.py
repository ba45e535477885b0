"""eval.py end to end: outputs, several models, transfer, reproducibility, and clear errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from afd_lightning.errors import AFDUserError
from afd_lightning.evaluate import run
from afd_lightning.evaluation.report.schema import SCHEMA_VERSION, EvaluationResults
from afd_lightning.evaluation.report.wandb_log import check_rows

from helpers import zygote
from helpers.compose import REPO
from helpers.evaluation import compose_eval

# The quick suite with tiny budgets: every code path, a few seconds.
TINY = [
    "suite=quick",
    "n_samples=40",
    "suite.attacks.pgd_linf.steps=5",
    "suite.attacks.pgd_linf.eps=[0,0.2,0.5]",
    "suite.attacks.fgsm.eps=[0,0.1,0.2]",
    "suite.attacks.square.n_queries=50",
    "suite.attacks.apgd_ce.n_iter=5",
]


def _finished(out):
    return (out / "COMPLETE").exists() and (out / "results.json").exists()


@pytest.mark.slow
def test_single_attack_run_writes_every_output(nt_ckpt, tmp_path):  # noqa: F811
    out = tmp_path / "eval"
    cfg = compose_eval(
        [f"ckpt_path={nt_ckpt}", "attack=pgd_l2", "attack.eps=[0,0.5,1,2]", "attack.steps=5", "n_samples=30", "seed=3"],
        out,
    )
    results = run(cfg)
    assert _finished(out) and not (out / "results.partial.json").exists()
    saved = json.loads((out / "results.json").read_text())
    m = saved["models"]["NT"]
    curve = m["attacks"]["pgd_l2"]
    assert curve["eps"] == [0, 0.5, 1, 2] and len(curve["accuracy"]) == 4 and curve["n_samples"] == 30
    assert curve["accuracy"][0] == pytest.approx(m["clean_accuracy"]) and 0 <= curve["auc"] <= 1
    assert set(saved["versions"]) >= {"torch", "advertorch", "foolbox", "pyautoattack"}
    assert saved["config"]["attack"]["eps"] == [0, 0.5, 1, 2] and saved["dataset"] == "digits"
    assert len(saved["sample_indices"]) == 30 and saved["n_samples"] == 30
    assert {"sparsity", "gradient_matrix", "sensitivity", "tsne"} <= set(m["analyses"])
    assert {c["name"] for c in m["checks"]} >= {"monotone_in_eps", "large_eps_near_zero", "attack_self_test"}
    assert all(set(c) == {"name", "passed", "details", "numbers"} for c in m["checks"])
    assert "Table 1" in (out / "tables.md").read_text() and "PGD-L2" in (out / "curves.md").read_text()
    assert (out / "accuracy_vs_eps.png").stat().st_size > 0
    assert results.models["NT"].attacks["pgd_l2"].accuracy == curve["accuracy"]
    # the schema round-trips through the real writer, and its readers see the checks' details
    assert saved["schema_version"] == SCHEMA_VERSION
    assert EvaluationResults.load(out / "results.json") == EvaluationResults.from_json(results.to_json())
    loaded = EvaluationResults.load(out / "results.json")
    assert [row[3] for row in check_rows(loaded)] == [c["details"] for c in m["checks"]]
    assert all(row[3] for row in check_rows(loaded))
    assert m["saturation"]["n_correct"] == round(m["clean_accuracy"] * 30)


@pytest.mark.slow
def test_two_models_side_by_side_with_transfer_and_same_seed_same_numbers(nt_ckpt, nt2_ckpt, tmp_path):  # noqa: F811
    over = [
        f"ckpt_path=[{nt_ckpt},{nt2_ckpt}]",
        "names=[A,B]",
        f"source_ckpt={nt2_ckpt}",
        "analyses=false",
        "plots=false",
        *TINY,
        "threads=1",  # one thread in both runs: the numbers are compared bit for bit
    ]
    # two checkpoints, one process each; the same seed again in this process must give the same numbers (a
    # second run in worker processes would only repeat their start-up; test_parallel compares the two paths
    # too, on one attack)
    first = run(compose_eval([*over, "workers=2"], tmp_path / "a"))
    again = run(compose_eval([*over, "workers=1"], tmp_path / "b"))
    assert list(first.models) == ["A", "B"]
    for name in ("A", "B"):
        assert set(first.models[name].attacks) == {"pgd_linf", "fgsm", "apgd_ce", "square", "pgd_linf_bb", "fgsm_bb"}
        for attack, c in first.models[name].attacks.items():
            assert c.accuracy == again.models[name].attacks[attack].accuracy, attack
        # both are NT: the self-test ran on them, transfer at the largest eps of the white-box sweep too
        assert first.models[name].attacks["pgd_linf_bb"].eps == [0, 0.2, 0.5]
        assert next(c for c in first.models[name].checks if c.name == "attack_self_test").passed is not None
        assert first.models[name].attacks["square"].auc is None  # a single eps: no AUC
    table1 = (tmp_path / "a" / "tables.md").read_text().split("Table 2")[0]
    assert "| A |" in table1 and "| B |" in table1 and "–" not in table1.split("| A |")[1].splitlines()[0]
    assert "Worst case" in table1
    aa_log = (tmp_path / "a" / "autoattack.log").read_text()  # AutoAttack's own log, not silenced
    assert "A apgd_ce eps=0.2" in aa_log and "robust accuracy after APGD-CE" in aa_log


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "corrupt",
        "architecture",
        "negative_eps",
        "too_many_samples",
        "other_dataset",
        "source_classes",
        "directory",
        "batch_size_0",
        "batch_size_negative",
        "correction",
        "workers_0",
    ],
)
@pytest.mark.slow
def test_bad_input_gives_a_clear_error_and_no_finished_output(case, nt_ckpt, tmp_path):  # noqa: F811
    def edited(edit):
        ckpt = torch.load(nt_ckpt, weights_only=False)
        edit(ckpt["hyper_parameters"])
        path = tmp_path / f"{case}.ckpt"
        torch.save(ckpt, path)
        return str(path)

    over = {
        "missing": lambda: ([f"ckpt_path={tmp_path / 'nope.ckpt'}"], "does not exist"),
        "corrupt": lambda: ([f"ckpt_path={tmp_path / 'bad.ckpt'}"], "corrupt"),
        "architecture": lambda: ([f"ckpt_path={edited(lambda c: c['model'].update(embed_dim=100))}"], "does not match"),
        "negative_eps": lambda: ([f"ckpt_path={nt_ckpt}", "attack=fgsm", "attack.eps=[0,-0.1]"], "eps"),
        "too_many_samples": lambda: ([f"ckpt_path={nt_ckpt}", "n_samples=5000"], r"larger than the test set \(360"),
        "other_dataset": lambda: (
            [f"ckpt_path=[{nt_ckpt},{edited(lambda c: c['dataset'].update(split_seed=7))}]"],
            "share one test set",
        ),
        "source_classes": lambda: (
            [f"ckpt_path={nt_ckpt}", f"source_ckpt={edited(lambda c: c['dataset']['meta'].update(num_classes=5))}"],
            "num_classes=5",
        ),
        "directory": lambda: (
            [f"ckpt_path={Path(nt_ckpt).parents[1]}"],
            r"is a directory; pass a \.ckpt file in it, e\.g\. .*checkpoints/last.ckpt",
        ),
        "batch_size_0": lambda: ([f"ckpt_path={nt_ckpt}", "batch_size=0"], "batch_size=0 must be a positive integer"),
        "batch_size_negative": lambda: ([f"ckpt_path={nt_ckpt}", "batch_size=-1"], "batch_size=-1 must be a positive"),
        "correction": lambda: ([f"ckpt_path={nt_ckpt}", "checks.correction=bonferroni"], "holm, none"),
        "workers_0": lambda: ([f"ckpt_path={nt_ckpt}", "workers=0"], "workers"),
    }[case]()
    (tmp_path / "bad.ckpt").write_bytes(b"not a checkpoint at all")
    out = tmp_path / "eval"
    out.mkdir()
    (out / "COMPLETE").write_text("left over from an earlier run")
    with pytest.raises(AFDUserError, match=over[1]):
        run(compose_eval([*TINY, *over[0]], out))
    assert not _finished(out) and (out / "FAILED").exists()


@pytest.mark.slow
def test_a_new_run_moves_an_earlier_complete_result_aside(nt_ckpt, tmp_path):  # noqa: F811
    out = tmp_path / "eval"
    run(compose_eval([*TINY, f"ckpt_path={nt_ckpt}", "plots=false"], out))
    assert _finished(out)
    with pytest.raises(AFDUserError):
        run(compose_eval([*TINY, f"ckpt_path={tmp_path / 'nope.ckpt'}"], out))
    # no complete results.json beside the failed run: the earlier one is in stale/
    assert not (out / "results.json").exists() and not (out / "tables.md").exists()
    assert (out / "stale" / "results.json").exists() and (out / "FAILED").exists()


@pytest.mark.slow
def test_cli_prints_errors_without_traceback(tmp_path):
    missing = zygote.run(
        ["eval.py", f"ckpt_path={tmp_path / 'nope.ckpt'}", f"output_dir={tmp_path / 'o'}"], cwd=REPO, timeout=300
    )
    assert missing.returncode != 0
    assert "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    unknown = zygote.run(["eval.py", "ckpt_path=x.ckpt", "attack=nosuchattack"], cwd=REPO, timeout=300)
    assert unknown.returncode != 0 and "nosuchattack" in unknown.stderr and "pgd_l2" in unknown.stderr
    (tmp_path / "x.ckpt").touch()  # exists, so the check of batch_size is the one that answers
    zero = zygote.run(
        ["eval.py", f"ckpt_path={tmp_path / 'x.ckpt'}", "batch_size=0", f"output_dir={tmp_path / 'z'}"],
        cwd=REPO,
        timeout=300,
    )
    assert zero.returncode != 0 and "batch_size=0" in zero.stderr and "Traceback" not in zero.stderr
