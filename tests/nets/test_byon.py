"""docs/byon.md end to end from an empty folder: the page's files and commands, with fewer epochs and samples."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import zygote

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "byon.md"
# Appended to the page's commands (later overrides win): 1 epoch of 2 batches, a 1-attack eval on 8 samples.
TINY_TRAIN = [
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=1",
    "test_after_fit=false",
    "logger=csv",
    "threads=1",
    "trainer.enable_progress_bar=false",
    "dataset.meta.train_attack_steps=1",
    "dataset.meta.eval_attack_steps=1",
]
TINY_EVAL = ["attack=fgsm", "n_samples=8", "analyses=false", "plots=false", "progress=false", "threads=1"]


def _blocks(text: str) -> list[tuple[str, str, str]]:
    """(language, title, body) of every fenced block of the page."""
    pattern = re.compile(r'^```(\w+)(?: title="([^"]+)")?\n(.*?)^```', re.S | re.M)
    return [(m.group(1), m.group(2) or "", m.group(3)) for m in pattern.finditer(text)]


def _run(cmd: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # three processes (train, eval, Python)
def test_bring_your_own_network_page_runs(tmp_path):
    blocks = _blocks(PAGE.read_text())
    files = [(title, body) for _, title, body in blocks if title]
    assert {t for t, _ in files} == {"mynets/__init__.py", "conf/model/small_cnn.yaml"}
    for title, body in files:  # a second block with the same title is appended to the file (section 4)
        (tmp_path / title).parent.mkdir(parents=True, exist_ok=True)
        with open(tmp_path / title, "a") as f:
            f.write(body)
    code_lines = [line for _, title, body in blocks if not title for line in body.splitlines()]
    assert sum(1 for line in code_lines if line.strip()) > 0
    src = next(body for _, title, body in blocks if title == "mynets/__init__.py")
    assert len(src.strip().splitlines()) <= 25  # "a ~20-line encoder"

    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO / "src")]),
        "AFD_LOG_DIR": str(tmp_path / "logs"),
        "OMP_NUM_THREADS": "1",
    }
    commands = [
        shlex.split(line)
        for lang, title, body in blocks
        if lang == "bash" and not title
        for line in body.splitlines()
        if line.startswith(("afd-train", "afd-eval"))
    ]
    assert [c[0] for c in commands] == ["afd-train", "afd-eval"]
    train, evaluate = commands

    # the two commands as the console scripts run them, forked from the test zygote (imports paid once)
    proc = zygote.run(["afd-train", *train[1:], *TINY_TRAIN], cwd=tmp_path, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = tmp_path / "runs" / "small_cnn" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()

    proc = zygote.run(["afd-eval", *evaluate[1:], *TINY_EVAL], cwd=tmp_path, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "results:" in proc.stdout

    # The page's Python, then (in the same process: each start imports torch) the refusal without trust,
    # the export the page names and its loading.
    python = next(body for lang, title, body in blocks if lang == "python" and not title)
    export = next(shlex.split(m.group(1)) for m in re.finditer(r"`(afd-export [^`]+)`", PAGE.read_text()))
    assert export[0] == "afd-export"
    after = f"""
from afd_lightning.store.stored_config import UnsafeConfigError
from afd_lightning.share.export import main as export_main
try:
    afd_lightning.load_classifier(ckpt)
    raise AssertionError("loaded without trust")
except UnsafeConfigError as err:
    assert "names code outside afd-lightning" in str(err) and "trust=['mynets']" in str(err), err
export_main({export[1:]!r})
m = afd_lightning.load_classifier("small_cnn_export", trust=["mynets"])
assert type(m).__module__ == "mynets" and torch.equal(m(x), model(x))
from afd_lightning.nets.size import size_function
for kwargs in ({{}}, {{"in_channels": 3, "width": 5, "embed_dim": 7, "num_classes": 4}}):
    built = SmallCNN(**kwargs)
    counted = sum(p.numel() for p in built.parameters()) + sum(b.numel() for b in built.buffers())
    assert size_function(SmallCNN)(**kwargs) == afd_lightning.nets.NetworkSize(counted, len(list(built.modules())))
"""
    proc = _run([sys.executable, "-c", python + after], tmp_path, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
