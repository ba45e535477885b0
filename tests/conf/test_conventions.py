"""The Hydra and packaging conventions our users know: debug presets, extras, hparams_search, sweep directory
names that paths can use, a light ``--help``, optional wandb, one version, a license and type information."""

from __future__ import annotations

import logging
import re
import subprocess
import sys

import pytest
import tomllib
from hydra.core.override_parser.overrides_parser import OverridesParser

import afd_lightning
from afd_lightning.config.extras import apply_extras
from afd_lightning.config.resolvers import _path_safe
from afd_lightning.train import run

from helpers import zygote
from helpers.compose import REPO, compose_train

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
TINY_ATTACKS = ["dataset.meta.train_attack_steps=1", "dataset.meta.eval_attack_steps=1", "trainer.accelerator=cpu"]


def _python(code: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env_code = f"import sys; sys.path.insert(0, {str(REPO / 'tests')!r})\n" + code
    return subprocess.run([sys.executable, "-c", env_code], capture_output=True, text=True, timeout=timeout, cwd=REPO)


# --------------------------------------------------------------------------- Hydra conventions
@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        ("fdr", {"trainer.fast_dev_run": True}),
        ("limit", {"trainer.limit_train_batches": 3, "trainer.max_epochs": 3}),
        ("overfit", {"trainer.overfit_batches": 3, "trainer.max_epochs": 20}),
        ("profiler", {"trainer.profiler._target_": "pytorch_lightning.profilers.SimpleProfiler"}),
    ],
)
def test_debug_presets_compose(preset, expected):
    from omegaconf import OmegaConf

    cfg = compose_train([f"debug={preset}"], fast=False)
    for key, value in expected.items():
        assert OmegaConf.select(cfg, key) == value, key
    assert cfg.extras.print_config is True and list(cfg.logger) == ["csv"]  # debug/default.yaml


@pytest.mark.slow
def test_debug_fdr_runs_the_pipeline_and_writes_no_checkpoint(tmp_path):
    metrics = run(compose_train(["debug=fdr", "method=afd", *TINY_ATTACKS], tmp_path / "run"))
    assert {"val/acc_adv", "test/acc_adv"} <= set(metrics)
    assert list(tmp_path.rglob("*.ckpt")) == []


def test_extras_print_config_logs_the_resolved_tree(caplog):
    cfg = compose_train(["extras.print_config=true", "tags=[x]"], "/tmp/unused-out")
    with caplog.at_level(logging.INFO, logger="afd_lightning.config.extras"):
        apply_extras(cfg)
    (text,) = [r.getMessage() for r in caplog.records if r.name == "afd_lightning.config.extras"]
    assert "_target_: afd_lightning.methods.AFD" in text and "eps: 0.2" in text and "${" not in text


def test_path_safe_names_have_no_override_syntax():
    name = _path_safe("lr_milestones=[10,20]__method-nt__ckpt_path-/a/b c.ckpt")
    assert not re.search(r"[=,/\[\] ]", name) and name.startswith("lr_milestones-10-20-__method-nt")


@pytest.mark.slow
def test_hparams_search_with_optuna_and_sweep_subdirs_usable_as_paths(tmp_path):
    """`hparams_search=afd_optuna`: two Optuna trials of one batch each (debug=fdr) in one subprocess."""
    sweep = tmp_path / "sweep"
    args = [
        "train.py",
        "hparams_search=afd_optuna",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.sampler.n_startup_trials=1",
        "debug=fdr",
        f"hydra.sweep.dir={sweep}",
        *TINY_ATTACKS,
    ]
    done = zygote.run(args, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    results = (sweep / "optimization_results.yaml").read_text()
    assert "best_value" in results and "method.optimizer_enc.lr" in results
    subdirs = sorted(p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert len(subdirs) == 2 and all(re.fullmatch(r"[A-Za-z0-9._+-]+", s) for s in subdirs), subdirs
    # The paths can be passed on unquoted, e.g. to eval.py ckpt_path=[...]
    paths = [f"{sweep / s}/checkpoints/last.ckpt" for s in subdirs]
    parsed = OverridesParser.create().parse_override(f"ckpt_path=[{','.join(paths)}]")
    assert parsed.value() == paths


# --------------------------------------------------------------------------- start-up and optional wandb
@pytest.mark.slow
def test_train_cli_imports_no_torch_before_running():
    """What keeps `train.py --help` / `--cfg job` at about a second: no torch/Lightning/wandb import."""
    done = _python(
        "import afd_lightning.train, afd_lightning.evaluate\n"
        "print(sorted(m for m in ('torch', 'pytorch_lightning', 'wandb') if m in sys.modules))"
    )
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


@pytest.mark.slow
def test_train_help_lists_the_training_groups_only():
    done = subprocess.run([sys.executable, "train.py", "--help"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    groups = dict(re.findall(r"^(\w+): (.+)$", done.stdout.split("== Config ==")[0], re.M))
    assert groups["debug"] == "default, fdr, limit, overfit, profiler" and groups["hparams_search"] == "afd_optuna"
    assert {"extras", "logger", "callbacks"} <= set(groups) and not {"suite", "eval"} & set(groups)


@pytest.mark.slow
def test_logger_csv_and_default_run_without_wandb_installed(tmp_path):
    code = f"""
assert not any(m.split(".")[0] == "wandb" for m in sys.modules), "wandb was imported before the run"
sys.modules["wandb"] = None  # as if not installed: `import wandb` raises ImportError
import logging
logging.basicConfig(level=logging.INFO)
from helpers.compose import compose_train
from afd_lightning.errors import ConfigError
from afd_lightning.train import build, run
tiny = ["method=nt", "test_after_fit=false", "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1"]
run(compose_train(["logger=csv", *tiny], {str(tmp_path / "csv")!r}))
run(compose_train(["logger=default", *tiny], {str(tmp_path / "default")!r}))
try:
    build(compose_train(["logger=wandb", "logger.wandb.mode=offline"], {str(tmp_path / "wandb")!r}))
except ConfigError as err:
    print("ERROR:", err)
"""
    # a forked child of the tests' fork server: it imported Lightning but never wandb, so the child's import of
    # wandb is its first, as in a new interpreter
    script = tmp_path / "no_wandb.py"
    script.write_text(f"import sys\nsys.path.insert(0, {str(REPO / 'tests')!r})\n" + code)
    done = zygote.run([str(script)], cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "csv" / "csv" / "metrics.csv").is_file() and (
        tmp_path / "default" / "csv" / "metrics.csv"
    ).is_file()
    assert "wandb is not installed, so this run logs without W&B" in done.stderr
    assert "ERROR: logger.wandb.mode=offline needs the wandb package: pip install 'afd-lightning[wandb]'" in done.stdout


# --------------------------------------------------------------------------- packaging
def test_one_version_source_license_and_py_typed():
    project = PYPROJECT["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "afd_lightning.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", afd_lightning.__version__)
    assert project["license"] == "MIT" and (REPO / "LICENSE").read_text().startswith("MIT License")
    assert (REPO / "src" / "afd_lightning" / "py.typed").is_file()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["afd_lightning"]


# Distribution name -> module name, for the dependencies whose names differ.
MODULES = {"pytorch-lightning": "pytorch_lightning", "hydra-core": "hydra", "scikit-learn": "sklearn"}
# Needed at run time but imported only by another dependency (advertorch imports PIL, undeclared).
INDIRECT = {"pillow"}
# Hydra plugins are found by Hydra (namespace hydra_plugins), named by a launcher config rather than imported.
PLUGINS = {"hydra-joblib-launcher": ("conf/train/hydra/launcher/local_parallel.yaml", "- joblib")}


def test_every_dependency_is_imported_by_the_package():
    sources = "\n".join(p.read_text() for p in (REPO / "src" / "afd_lightning").rglob("*.py"))
    for requirement in PYPROJECT["project"]["dependencies"]:
        name = re.split(r"[<>=!~\[ ;]", requirement)[0].lower()
        if name in INDIRECT:
            continue
        if name in PLUGINS:
            config, uses = PLUGINS[name]
            assert uses in (REPO / config).read_text(), f"{name}: no config uses the plugin"
            continue
        module = MODULES.get(name, name.replace("-", "_"))
        imported = rf"^\s*(import|from) {module}\b|import_module\(\"{module}\"\)"
        assert re.search(imported, sources, re.M), f"{name} is a dependency nothing imports"
    assert not any(r.startswith(("rich", "wandb")) for r in PYPROJECT["project"]["dependencies"])
