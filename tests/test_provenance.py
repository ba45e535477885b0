"""Provenance: every result records its code, libraries, threads, device, seed, command and wall time;
a ``threads=auto`` resume keeps the thread count its checkpoint was trained with, so it stays bit-exact.
"""

from __future__ import annotations

import json
import subprocess

import pytest
import torch

from afd_lightning.process import threads
from afd_lightning.run import provenance
from afd_lightning.run.provenance import Provenance, differences
from afd_lightning.store.checkpoint import load_checkpoint
from afd_lightning.train import run

from helpers.compose import REPO, compose_train

TINY = ["method=at", "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1", "test_after_fit=false"]


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_collect_names_the_checkout_and_what_ran(restore_threads):
    torch.set_num_threads(1)
    record = provenance.collect(seed=3, device="cpu", threads_setting=1, overrides=["seed=3"], argv=["train.py", "a b"])
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert record.commit == head and isinstance(record.dirty, bool)
    assert (record.threads, record.seed, record.device) == (1, 3, "cpu")
    assert record.command == "train.py 'a b'" and record.overrides == ["seed=3"]
    assert record.versions["torch"] == torch.__version__ and "pytorch-lightning" in record.versions
    # the CPU: another instruction set runs other kernels (same code and threads, other numbers)
    assert record.cpu["machine"] and record.cpu["model"]
    assert record.cpu["kernels"] == str(torch.backends.cpu.get_cpu_capability())
    data = record.snapshot()
    assert data["wall_s"] is not None and data["wall_s"] >= 0
    assert Provenance.from_json(json.loads(json.dumps(data))) == record
    with pytest.raises(ValueError, match=r"unknown fields \['injected'\]"):  # one rule with the results schema
        Provenance.from_json({**data, "injected": 1})


def test_a_copy_outside_a_checkout_reports_its_version(tmp_path, monkeypatch):
    # git answers for tmp_path (not a repository): no commit, and the package version stands for the code
    assert provenance.git_state(tmp_path) == (None, None)
    monkeypatch.setattr(provenance, "git_state", lambda where=None: (None, None))
    record = provenance.collect(argv=["x"])
    assert record.commit is None and record.code.startswith("afd-lightning ") and "no git checkout" in record.code


def test_differences_name_what_differs_and_who():
    base = provenance.collect(argv=["x"]).to_json()
    same = dict(base)
    other = {**base, "threads": base["threads"] + 1}
    found = differences({"a": base, "b": same, "c": other, "d": None})
    assert set(found) == {"code", "threads"}
    assert found["threads"] == {str(base["threads"]): ["a", "b"], str(base["threads"] + 1): ["c"], "unknown": ["d"]}
    assert differences({"a": base, "b": same}) == {}


@pytest.mark.slow
def test_metrics_json_and_checkpoints_carry_provenance(tmp_path):
    out = tmp_path / "run"
    run(compose_train([*TINY, "seed=5"], out))
    written = json.loads((out / "metrics.json").read_text())["provenance"]
    assert written["seed"] == 5 and written["threads"] == 1 and written["threads_setting"] == "1"
    assert written["device"] == "cpu" and written["commit"] and written["wall_s"] > 0
    stored = load_checkpoint(out / "checkpoints" / "last.ckpt")["afd_lightning"]["provenance"]
    assert stored["threads"] == 1 and stored["commit"] == written["commit"]


@pytest.mark.slow
def test_threads_auto_resume_reuses_the_checkpoints_count_and_stays_bit_exact(tmp_path, monkeypatch, restore_threads):
    """``auto`` chose 2 threads for the first part; beside more load it would choose 1 on resume."""
    choices = []

    def auto(setting="auto", dataset=None):  # threads=auto, with the choice scripted (e.g. another machine)
        assert setting == "auto"
        n = choices.pop(0)
        torch.set_num_threads(n)
        return n

    monkeypatch.setattr(threads, "set_threads", auto)  # train.run imports it at call time
    auto_threads = ["threads=auto", *TINY]
    straight, first, resumed = tmp_path / "straight", tmp_path / "first", tmp_path / "resumed"
    choices[:] = [2, 2, 1]
    run(compose_train([*auto_threads, "trainer.max_epochs=2"], straight))
    run(compose_train([*auto_threads, "trainer.max_epochs=1"], first))
    assert load_checkpoint(first / "checkpoints" / "last.ckpt")["afd_lightning"]["provenance"]["threads"] == 2
    last = first / "checkpoints" / "last.ckpt"
    run(compose_train([*auto_threads, "trainer.max_epochs=2", f"ckpt_path={last}"], resumed))
    record = json.loads((resumed / "metrics.json").read_text())["provenance"]
    assert record["threads"] == 2 and "resumed" in record["threads_setting"]
    a = load_checkpoint(straight / "checkpoints" / "last.ckpt")
    b = load_checkpoint(resumed / "checkpoints" / "last.ckpt")
    assert (a["epoch"], a["global_step"]) == (b["epoch"], b["global_step"])
    differ = [k for k, v in a["state_dict"].items() if not torch.equal(v, b["state_dict"][k])]
    assert not differ, f"{len(differ)} tensors differ from the uninterrupted run, e.g. {differ[:4]}"


def test_an_explicit_thread_count_wins_over_the_checkpoints(restore_threads):
    checkpoint = {"afd_lightning": {"provenance": {"threads": 2}}}
    assert provenance.threads_for_resume("1", 1, checkpoint) == (1, "1")
    assert provenance.threads_for_resume("auto", 1, None) == (1, "auto")
    assert provenance.threads_for_resume("auto", 1, checkpoint)[0] == 2 and torch.get_num_threads() == 2


def test_a_stored_thread_count_is_bounded_by_the_cores_and_omp(restore_threads, monkeypatch):
    """A checkpoint storing 24 threads (or 10**9) on a machine of 2 cores with OMP_NUM_THREADS=1 starts 1."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    for stored in (24, 10**9):
        checkpoint = {"afd_lightning": {"provenance": {"threads": stored}}}
        count, setting = provenance.threads_for_resume("auto", 1, checkpoint)
        assert count == 1 and torch.get_num_threads() == 1
        assert stored > 4096 or "more than the 1" in setting


def _fake_run(root, name: str, seed: int, record: dict | None) -> None:
    """A finished run as train.py leaves it (config + metrics.json), with the given provenance."""
    from omegaconf import OmegaConf

    run_dir = root / name
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(compose_train([f"seed={seed}"]), run_dir / ".hydra" / "config.yaml")
    metrics = {"test/acc_clean": 0.9 + seed / 100, "test/acc_adv": 0.5}
    if record is not None:
        metrics["provenance"] = record
    (run_dir / "metrics.json").write_text(json.dumps(metrics))


@pytest.mark.slow
def test_summarize_refuses_runs_of_other_threads_unless_allowed(tmp_path, capsys):
    from afd_lightning.summarize import cli as summarize

    record = provenance.collect(seed=0, argv=["train.py"]).to_json()
    _fake_run(tmp_path / "runs", "a", 0, {**record, "threads": 1})
    _fake_run(tmp_path / "runs", "b", 1, {**record, "threads": 2})
    assert summarize.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert (
        "different code or CPU thread counts" in err and "train threads differs (1: " in err and "--allow-mixed" in err
    )
    assert not (tmp_path / "out" / "summary.json").exists()
    assert summarize.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--allow-mixed"]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    row = summary["rows"][0]
    assert row["provenance"]["train"]["threads"] == ["1", "2"] and "threads" in row["provenance"]["differ"]["train"]
    assert summary["provenance"]["commit"] == record["commit"] and summary["provenance"]["command"]


@pytest.mark.slow
def test_summarize_accepts_runs_of_one_code_and_thread_count(tmp_path):
    from afd_lightning.summarize import cli as summarize

    record = provenance.collect(seed=0, argv=["train.py"]).to_json()
    _fake_run(tmp_path, "a", 0, record)
    _fake_run(tmp_path, "b", 1, {**record, "seed": 1, "wall_s": 9.0})
    (row,) = summarize.run(tmp_path)
    assert row["provenance"]["differ"] == {} and row["provenance"]["train"]["code"] == [
        Provenance.from_json(record).code
    ]
    _fake_run(tmp_path, "c", 2, None)  # made before provenance was recorded: its code is unknown
    with pytest.raises(summarize.SummaryError, match="unknown: .*c"):
        summarize.run(tmp_path)


def test_every_benchmark_that_writes_json_records_provenance():
    writers = [p for p in sorted((REPO / "benchmarks").glob("*.py")) if "json.dumps(" in p.read_text()]
    assert writers, "no benchmark writes JSON: update this test"
    lacking = [p.name for p in writers if "provenance.collect(" not in p.read_text()]
    assert not lacking, f"benchmarks writing JSON without a provenance record (afd_lightning.run.provenance): {lacking}"
