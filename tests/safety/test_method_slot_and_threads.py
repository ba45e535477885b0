"""Breaks 6 and 9 of the hostile-file review: eval.py checks a stored config's method slot as the loaders do, and
a thread count stored in a checkpoint is a hint bounded by this process's cores and ``OMP_NUM_THREADS``."""

from __future__ import annotations

import pytest
import torch

from afd_lightning.evaluate import run
from afd_lightning.evaluation import loading
from afd_lightning.process import threads
from afd_lightning.run.provenance import threads_for_resume
from afd_lightning.store.stored_config import UnsafeConfigError

from helpers.crafted import edited, genuine_parts
from helpers.evaluation import compose_eval


@pytest.fixture(scope="module")
def parts():
    return genuine_parts("nt")


@pytest.mark.slow
def test_a_crafted_method_target_fails_eval_before_any_report(parts, tmp_path):
    """Break 6: a crafted ``method._target_`` gave rc 0 and 36 injected lines in tables.md."""
    bad = "x\n## injected\n<script>alert(1)</script>" + "y" * 1500

    def craft(config):
        config["method"]["_target_"] = bad

    path = edited(parts, tmp_path / "crafted.ckpt", craft)
    out = tmp_path / "out"
    with pytest.raises(UnsafeConfigError, match="method._target_"):
        loading.load_models(compose_eval([f"ckpt_path={path}", "attack=fgsm"], out))
    with pytest.raises(UnsafeConfigError, match="method._target_"):
        run(compose_eval([f"ckpt_path={path}", "attack=fgsm", "n_samples=8"], out))
    assert not (out / "tables.md").exists() and not (out / "results.json").exists()


def test_names_from_files_are_one_capped_line(parts, tmp_path):
    def note(text):
        def craft(config):
            config["dataset"]["meta"]["note"] = text

        return craft

    a = edited(parts, tmp_path / "a.ckpt", note("first\n| row |" + "a" * 900))
    b = edited(parts, tmp_path / "b.ckpt", note("second\n# heading" + "b" * 900))
    loaded, _ = loading.load_models(compose_eval([f"ckpt_path=[{a},{b}]", "attack=fgsm"], tmp_path / "out"))
    assert len(loaded) == 2
    for label in loaded:
        assert label.startswith("NT (dataset.meta.note=") and len(label) <= loading.MAX_LABEL and "\n" not in label


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _stored(count):
    return {"afd_lightning": {"provenance": {"threads": count}}}


def test_a_stored_thread_count_is_bounded_by_omp_num_threads(restore_threads, monkeypatch):
    """Break 9: with OMP_NUM_THREADS=1 and threads=auto, a checkpoint storing 24 started 47 OS threads."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    count, setting = threads_for_resume("auto", 1, _stored(24))
    assert count == 1 and torch.get_num_threads() == 1
    assert "24 is more than the 1" in setting


def test_a_stored_thread_count_is_bounded_by_the_cores(restore_threads, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    torch.set_num_threads(1)
    count, _ = threads_for_resume("auto", 1, _stored(24))
    assert count == 2 and torch.get_num_threads() == 2
    torch.set_num_threads(1)
    assert threads_for_resume("auto", 1, _stored(10**9)) == (1, "auto")  # not a thread count: ignored
    assert threads_for_resume("3", 3, _stored(24)) == (3, "3")  # an explicit count always wins
