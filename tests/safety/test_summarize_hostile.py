"""afd-summarize treats the folder it is given as hostile (issue 27, breaks 1 and 2).

Every file is read through afd_lightning.files.reader (regular files, size cap, depth and node bounds, YAML without
aliases), a run that cannot be read is skipped with one warning line naming it, and every output is written
through the no-follow writer. Observables: marker files outside the folder, the process's time and memory.
"""

from __future__ import annotations

import json
import os
import resource
import time

import pytest

from afd_lightning.summarize import cli as summarize

from helpers import zygote
from helpers.compose import REPO, compose_train

GOOD_METRICS = {"test/acc_clean": 0.9, "test/acc_adv": 0.5}


def _run(root, name: str, seed: int = 0, metrics: dict | None = None):
    from omegaconf import OmegaConf

    run_dir = root / name
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(compose_train([f"seed={seed}"]), run_dir / ".hydra" / "config.yaml")
    (run_dir / "metrics.json").write_text(json.dumps(metrics or GOOD_METRICS))
    return run_dir


def test_outputs_are_never_written_through_a_link(tmp_path):
    root = tmp_path / "runs"
    _run(root, "a")
    outside = tmp_path / "outside.md"
    outside.write_text("precious\n")
    (root / "summary.md").symlink_to(outside)
    assert summarize.main([str(root)]) == 1  # one error line, nothing written through the link
    assert outside.read_text() == "precious\n"


@pytest.mark.slow
def test_a_newline_in_an_override_adds_no_line_to_the_summary(tmp_path, caplog):
    root = tmp_path / "runs"
    _run(root, "good")
    bad = _run(root, "bad", seed=1)
    (bad / ".hydra" / "overrides.yaml").write_text(
        json.dumps(["seed=1", "method.lr=1\n# Injected heading\n<script>alert(1)</script>"])
    )
    summarize.run(root, out_dir=tmp_path / "out")
    text = (tmp_path / "out" / "summary.md").read_text()
    assert "Injected" not in text and "<script>" not in text
    assert any("skipping run" in r.getMessage() and "bad" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("kind", ["dev_zero", "fifo", "alias_bomb", "deep", "not_json", "wrong_shape"])
@pytest.mark.slow
def test_a_hostile_run_is_skipped_with_one_line_and_the_rest_summarised(tmp_path, kind, caplog):
    root = tmp_path / "runs"
    _run(root, "good")
    bad = _run(root, "bad", seed=1)
    if kind == "dev_zero":
        (bad / "metrics.json").unlink()
        (bad / "metrics.json").symlink_to("/dev/zero")
    elif kind == "fifo":
        (bad / "metrics.json").unlink()
        os.mkfifo(bad / "metrics.json")
    elif kind == "alias_bomb":
        lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
        lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 12)]
        (bad / ".hydra" / "config.yaml").write_text("\n".join(lines) + "\n")
    elif kind == "deep":
        (bad / "metrics.json").write_text("[" * 5000 + "]" * 5000)
    elif kind == "not_json":
        (bad / "metrics.json").write_text("{not json")
    else:
        (bad / ".hydra" / "config.yaml").write_text("dataset: [1, 2]\nmethod: 3\nseed: x\n")
    start = time.perf_counter()
    rows = summarize.run(root, out_dir=tmp_path / "out")
    assert time.perf_counter() - start < 30
    assert [r["runs"] for r in rows] == [["good"]] or sum(len(r["runs"]) for r in rows) == 1
    # a /dev/zero link or a FIFO is not followed or read (nothing found), the others are skipped by name
    skipped = [r.getMessage() for r in caplog.records if "skipping run" in r.getMessage()]
    assert kind in ("dev_zero", "fifo") or (len(skipped) == 1 and "bad" in skipped[0])


@pytest.mark.slow
def test_a_results_json_linked_to_dev_zero_costs_no_memory(tmp_path):
    root = tmp_path / "runs"
    run = _run(root, "good")
    (run / "eval").mkdir()
    (run / "eval" / "results.json").symlink_to("/dev/zero")
    # in a child forked from the tests' fork server (imports done, no test run): its peak resident memory starts at
    # the server's, so the growth is what the summary cost
    script = tmp_path / "summarize_dev_zero.py"
    script.write_text(
        "import pathlib, resource\n"
        "from afd_lightning.summarize import cli\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"cli.run(pathlib.Path({str(root)!r}), out_dir=pathlib.Path({str(tmp_path / 'out')!r}))\n"
        "print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    done = zygote.run([str(script)], cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    before, after = map(int, done.stdout.strip().splitlines()[-1].split())
    assert after - before < 500_000  # KiB: far below the 2 GiB it used to reach
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 0
