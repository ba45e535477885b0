"""Runs that can be followed and shared: the resolved config in every logger, W&B offline runs read back
from their files, one log line per epoch, no noise warnings, and methods rebuilt by ``load_from_checkpoint``."""

from __future__ import annotations

import logging
import struct
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from afd_lightning import methods
from afd_lightning.process.quiet import LOG_LINES
from afd_lightning.run.loggers import WandbLogger, multirun_group, stored_run_id
from afd_lightning.store.checkpoint import CheckpointError
from afd_lightning.store.stored_config import UnsafeConfigError
from afd_lightning.train import build, run

from helpers.compose import compose_train

TINY = ["+trainer.limit_train_batches=3", "+trainer.limit_val_batches=1", "trainer.log_every_n_steps=1"]


# --------------------------------------------------------------------------- reading W&B's offline files
def wandb_records(run_dir: Path):
    """The records of an offline run's ``run-<id>.wandb`` file (W&B's LevelDB-style log of protobufs)."""
    from wandb.proto import wandb_internal_pb2 as pb

    (path,) = run_dir.glob("run-*.wandb")
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, chunks, block = 7, [], 32768
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a record header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunks.append(data[pos + 7 : pos + 7 + length])
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = pb.Record()
            record.ParseFromString(b"".join(chunks))
            chunks = []
            yield record


def offline_run(run_dir: Path) -> SimpleNamespace:
    """Run id, group, tags, the config (nested, as logged) and the artifacts of one offline run directory."""
    import json

    out = SimpleNamespace(run_id=None, group=None, tags=[], config={}, artifacts=[])
    for record in wandb_records(run_dir):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out.run_id, out.group, out.tags = record.run.run_id, record.run.run_group, list(record.run.tags)
        elif kind == "config":
            for item in record.config.update:
                out.config[item.key] = json.loads(item.value_json)
        elif kind == "artifact":
            files = [entry.path for entry in record.artifact.manifest.contents]
            out.artifacts.append((record.artifact.name, list(record.artifact.aliases), files))
    return out


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def record_warnings_as_a_user_sees_them():
    """Every warning a user of train.py would see, every time: Python hides DeprecationWarnings
    raised outside ``__main__``, except that ours (afd_lightning.*) count too."""
    warnings.simplefilter("always")
    for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("always", category=DeprecationWarning, module=r"afd_lightning")


@pytest.fixture(scope="module")
def afd_run(tmp_path_factory):
    """AFD on digits, 1 epoch with W&B offline and CSV, then resumed for a 2nd epoch (a few seconds)."""
    out = tmp_path_factory.mktemp("afd_run")
    with pytest.MonkeyPatch.context() as mp:
        for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_DIR"):
            mp.delenv(var, raising=False)
        for var in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
            mp.setenv(var, str(out / "wandb-home" / var.lower()))
        handlers = {"epochs": _Lines(), "lightning": _Lines()}
        logging.getLogger("afd_lightning.callbacks.progress").addHandler(handlers["epochs"])
        logging.getLogger("pytorch_lightning.utilities.rank_zero").addHandler(handlers["lightning"])
        progress_logger = logging.getLogger("afd_lightning.callbacks.progress")
        old_level = progress_logger.level
        # Hydra's level in train.py; setLevel (not a plain attribute write) also clears logging's isEnabledFor
        # cache, which an earlier test in the session may have filled while the level was WARNING.
        progress_logger.setLevel(logging.INFO)
        # An in-process Hydra app earlier in the session (dictConfig, disable_existing_loggers) may have disabled
        # the loggers that existed then; train.py configures logging once per process, so re-enable here.
        mp.setattr(logging.getLogger("afd_lightning.callbacks.progress"), "disabled", False)
        mp.setattr(logging.getLogger("pytorch_lightning.utilities.rank_zero"), "disabled", False)
        common = ["method=afd", "logger=default", "logger.wandb.mode=offline", "tags=[unit,afd]", *TINY]
        try:
            with warnings.catch_warnings(record=True) as caught:
                record_warnings_as_a_user_sees_them()
                run(compose_train([*common, "trainer.max_epochs=1", "test_after_fit=false"], out))
                last = out / "checkpoints" / "last.ckpt"
                first_id = stored_run_id(last)
                run(compose_train([*common, "trainer.max_epochs=2", f"ckpt_path={last}"], out))
            import wandb

            wandb.teardown()  # W&B's service writes the run files fully when it stops (at exit for train.py)
        finally:
            progress_logger.setLevel(old_level)
            logging.getLogger("afd_lightning.callbacks.progress").removeHandler(handlers["epochs"])
            logging.getLogger("pytorch_lightning.utilities.rank_zero").removeHandler(handlers["lightning"])
    return SimpleNamespace(
        out=out,
        first_id=first_id,
        warnings=[f"{w.category.__name__} ({w.filename}:{w.lineno}): {w.message}" for w in caught],
        epoch_lines=handlers["epochs"].lines,
        lightning_lines=handlers["lightning"].lines,
    )


# --------------------------------------------------------------------------- every logger gets the config
@pytest.mark.slow
def test_offline_wandb_run_holds_config_tags_and_checkpoint_artifacts(afd_run):
    runs = sorted((afd_run.out / "wandb").glob("offline-run-*"))
    assert len(runs) == 2, f"one offline run per start (first + resume), got {runs}"
    first, resumed = (offline_run(r) for r in runs)
    assert first.run_id and resumed.run_id == first.run_id == afd_run.first_id  # the resume continues the run
    for logged in (first, resumed):
        assert logged.tags == ["unit", "afd"] and not logged.group  # a single run has no multirun group
        method = logged.config["method"]
        assert method["_target_"] == "afd_lightning.methods.AFD"
        lrs = [method[k]["lr"] for k in ("optimizer_cls", "optimizer_disc", "optimizer_enc")]
        assert lrs == [0.1, 0.1, 0.5]  # Table A2
        assert logged.config["dataset"]["meta"]["eps"] == 0.2
        assert logged.config["attack"]["steps"] == 2 and logged.config["seed"] == 0  # conftest.FAST
    # log_model=true: the checkpoints each start wrote, as versions of one artifact: best.ckpt aliased best
    # (W&B adds latest to the newest version), last.ckpt latest. The resumed epoch did not beat best.ckpt
    # (val/acc_adv stays at chance after 3 batches), so that start wrote, and logged, last.ckpt only.
    for logged, expected in ((first, [("best", "latest"), ("latest",)]), (resumed, [("latest",)])):
        assert {name for name, _, _ in logged.artifacts} == {f"model-{first.run_id}"}
        assert sorted(tuple(sorted(a)) for _, a, _ in logged.artifacts) == expected
        assert all(files == ["model.ckpt"] for _, _, files in logged.artifacts)


@pytest.mark.slow
def test_csv_hparams_yaml_holds_the_resolved_config(afd_run):
    hparams = yaml.safe_load((afd_run.out / "csv" / "hparams.yaml").read_text())
    assert hparams["method"]["optimizer_enc"]["lr"] == 0.5 and hparams["dataset"]["meta"]["eps"] == 0.2
    assert hparams["tags"] == ["unit", "afd"]
    assert "${" not in (afd_run.out / "csv" / "hparams.yaml").read_text()  # resolved, no interpolations


@pytest.mark.slow
def test_checkpoint_stores_config_as_lightning_hyperparameters(afd_run):
    checkpoint = torch.load(afd_run.out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["hyper_parameters"]["method"]["_target_"] == "afd_lightning.methods.AFD"
    assert "config" not in checkpoint["afd_lightning"]  # stored once, as hyper_parameters
    assert checkpoint["afd_lightning"]["wandb_run_id"] == afd_run.first_id


# --------------------------------------------------------------------------- progress and noise
@pytest.mark.slow
def test_one_info_line_per_epoch(afd_run):
    assert len(afd_run.epoch_lines) == 2, afd_run.epoch_lines  # epoch 1, then the resumed epoch 2
    for n, line in enumerate(afd_run.epoch_lines, start=1):
        assert line.startswith(f"epoch {n}/{n} ")
        for key in ("train/loss_cls=", "train/loss_disc=", "train/loss_enc=", "val/acc_clean=", "val/acc_adv="):
            assert key in line, line
        assert line.endswith(" s)")


@pytest.mark.slow
def test_training_raises_no_unfiltered_warning_and_no_noise_lines(afd_run):
    assert afd_run.warnings == []
    noise = tuple(prefix for _, prefix, _ in LOG_LINES)
    assert not [line for line in afd_run.lightning_lines if line.startswith(noise)]
    assert any("max_epochs=2" in line for line in afd_run.lightning_lines)  # the handler did see Lightning's lines


@pytest.mark.slow
def test_evaluation_raises_no_unfiltered_warning(afd_run, tmp_path):
    from hydra import compose, initialize_config_dir

    from afd_lightning.config.paths import config_dir
    from afd_lightning.evaluate import run as evaluate

    overrides = [
        f"ckpt_path={afd_run.out / 'checkpoints' / 'last.ckpt'}",
        f"output_dir={tmp_path / 'eval'}",
        "attack=pgd_linf",
        "attack.eps=[0,0.2]",
        "attack.steps=3",
        "n_samples=20",
        "progress=false",
        "plots=false",
    ]
    with initialize_config_dir(config_dir=str(config_dir("eval")), version_base="1.3"):
        cfg = compose(config_name="eval", overrides=overrides)
    with warnings.catch_warnings(record=True) as caught:
        record_warnings_as_a_user_sees_them()
        evaluate(cfg)
    assert [f"{w.category.__name__} ({w.filename}:{w.lineno}): {w.message}" for w in caught] == []


def test_wandb_logger_does_not_pass_the_obsolete_anonymous_setting(tmp_path):
    logger = WandbLogger(project="p", save_dir=str(tmp_path), mode="disabled")
    # Lightning keeps wandb.init's arguments in this private dict; if it moves, wandb warns again.
    assert "project" in logger._wandb_init and "anonymous" not in logger._wandb_init


@pytest.mark.slow
def test_progress_bar_is_tqdm_and_callbacks_none_means_none(train_cfg):
    from pytorch_lightning.callbacks import TQDMProgressBar

    _, _, trainer = build(train_cfg(["trainer.enable_progress_bar=true"]))
    assert isinstance(trainer.progress_bar_callback, TQDMProgressBar)  # not rich's, which writes no log lines
    _, _, trainer = build(train_cfg(["callbacks=none"]))
    assert trainer.checkpoint_callbacks == [] and trainer.progress_bar_callback is None


@pytest.mark.slow
def test_callbacks_none_writes_no_checkpoint(train_cfg, tmp_path):
    run(train_cfg(["callbacks=none", "method=nt", "test_after_fit=false", *TINY]))
    assert list(tmp_path.rglob("*.ckpt")) == []
    assert (tmp_path / "run" / "metrics.json").is_file()


# --------------------------------------------------------------------------- load_from_checkpoint
@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("nt", methods.NaturalTraining),
        ("at", methods.AdversarialTraining),
        ("trades", methods.TRADES),
        ("match", methods.EmbeddingMatching),
    ],
)
@pytest.mark.slow
def test_load_from_checkpoint_rebuilds_every_method(name, cls, train_cfg, tmp_path):
    run(train_cfg([f"method={name}", "test_after_fit=false", *TINY]))
    _check_loaded(cls, tmp_path / "run" / "checkpoints" / "last.ckpt")


@pytest.mark.slow
def test_load_from_checkpoint_rebuilds_afd(afd_run):
    loaded = _check_loaded(methods.AFD, afd_run.out / "checkpoints" / "last.ckpt")
    assert loaded.discriminator is not None and len(loaded.configure_optimizers()[0]) == 3
    assert methods.RobustMethod.load_from_checkpoint(afd_run.out / "checkpoints" / "best.ckpt").__class__ is methods.AFD
    with pytest.raises(CheckpointError, match="AFD run, not by a NaturalTraining"):
        methods.NaturalTraining.load_from_checkpoint(afd_run.out / "checkpoints" / "last.ckpt")


def _check_loaded(cls, path: Path):
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    loaded = cls.load_from_checkpoint(path)
    assert type(loaded) is cls
    assert dict(loaded.hparams) == checkpoint["hyper_parameters"]
    state = loaded.state_dict()
    assert state.keys() == checkpoint["state_dict"].keys()
    assert all(torch.equal(state[k], v) for k, v in checkpoint["state_dict"].items())
    with torch.no_grad():
        assert loaded.eval()(torch.rand(2, 1, 8, 8)).shape == (2, 10)
    assert loaded.attack is not None and loaded.eval_attack is not None
    assert cls.load_from_checkpoint(path, eval_attack=None).eval_attack is None  # kwargs replace built arguments
    return loaded


@pytest.mark.parametrize("key", ["method", "model", "attack"])
@pytest.mark.slow
def test_load_from_checkpoint_refuses_targets_off_the_allow_list(key, afd_run, tmp_path):
    checkpoint = torch.load(afd_run.out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    marker = tmp_path / "pwned"
    checkpoint["hyper_parameters"][key] = {"_target_": "pathlib.Path.write_text", "self": str(marker), "data": "x"}
    bad = tmp_path / "bad.ckpt"
    torch.save(checkpoint, bad)
    with pytest.raises(UnsafeConfigError, match=f"{key}._target_='pathlib.Path.write_text'"):
        methods.AFD.load_from_checkpoint(bad)
    assert not marker.exists()


# --------------------------------------------------------------------------- multirun names
def test_multirun_group_is_the_sweep_directory_name(tmp_path):
    from hydra.conf import HydraConf
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    def hydra_run(mode):
        hydra_cfg = OmegaConf.structured(HydraConf)
        hydra_cfg.mode, hydra_cfg.sweep.dir = mode, str(tmp_path / "2026-12-01_10-00-00")
        HydraConfig.instance().set_config(OmegaConf.create({"hydra": hydra_cfg}))

    assert multirun_group() is None  # no Hydra run
    try:
        hydra_run(RunMode.MULTIRUN)
        assert multirun_group() == "2026-12-01_10-00-00"
        hydra_run(RunMode.RUN)
        assert multirun_group() is None
    finally:
        HydraConfig.instance().cfg = None
