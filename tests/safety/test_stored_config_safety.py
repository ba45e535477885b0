"""Nothing a checkpoint's stored config names gets executed unless it is on our allow-list.

Each test writes a checkpoint that holds only dicts, strings and tensors (so it passes
``torch.load(weights_only=True)``) but whose stored config names a callable that would act on the
machine. Loading must refuse it with an error naming the key, and the action must not happen.
"""

from __future__ import annotations

import pickle

import pytest
import torch
from omegaconf import OmegaConf

from afd_lightning.config.paths import config_dir
from afd_lightning.nets.build import build_model
from afd_lightning.store.classifier import load_classifier
from afd_lightning.store.stored_config import UnsafeConfigError, allowed_targets, check_stored

from helpers.compose import compose_train


@pytest.fixture(scope="module")
def genuine(tmp_path_factory):
    """(run config, state_dict) of a real untrained digits NT run: what train.py stores."""
    out = tmp_path_factory.mktemp("genuine")
    cfg = compose_train(["method=nt"], out)
    config = OmegaConf.to_container(cfg, resolve=True)
    model = build_model(cfg.model)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    return config, state


def write_checkpoint(path, config, state):
    torch.save({"state_dict": state, "afd_lightning": {"config": config, "method": "NaturalTraining"}}, path)
    return path


def crafted(genuine, tmp_path, section: str, key: str | None, payload: dict):
    """A copy of the genuine checkpoint with ``payload`` as ``config[section]`` (or ``config[section][key]``)."""
    config, state = genuine
    config = pickle.loads(pickle.dumps(config))  # deep copy
    if key is None:
        config[section] = payload
    else:
        config[section][key] = payload
    return write_checkpoint(tmp_path / "crafted.ckpt", config, state)


def assert_refused(fn, marker, key_fragment):
    with pytest.raises(UnsafeConfigError) as info:
        fn()
    assert key_fragment in str(info.value)
    assert not marker.exists(), "the payload ran"


def test_genuine_checkpoint_still_loads(genuine, tmp_path):
    path = write_checkpoint(tmp_path / "good.ckpt", *genuine)
    model = load_classifier(path, expect_dataset="digits")
    assert not model.training


def test_spawn_in_model_target_is_refused(genuine, tmp_path):
    marker = tmp_path / "spawned"
    payload = {"_target_": "distutils.spawn.spawn", "cmd": ["touch", str(marker)]}
    path = crafted(genuine, tmp_path, "model", None, payload)
    assert_refused(lambda: load_classifier(path), marker, "model._target_='distutils.spawn.spawn'")


def test_path_write_text_through_args_is_refused(genuine, tmp_path):
    marker = tmp_path / "written.txt"
    payload = {
        "_target_": "pathlib.Path.write_text",
        "_args_": [{"_target_": "pathlib.Path", "_args_": [str(marker)]}, "pwned"],
    }
    path = crafted(genuine, tmp_path, "model", None, payload)
    assert_refused(lambda: load_classifier(path), marker, "pathlib.Path.write_text")


def test_builtin_open_for_writing_is_refused(genuine, tmp_path):
    marker = tmp_path / "opened.txt"
    payload = {"_target_": "builtins.open", "file": str(marker), "mode": "w"}
    path = crafted(genuine, tmp_path, "model", None, payload)
    assert_refused(lambda: load_classifier(path, expect_dataset="digits"), marker, "builtins.open")


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_written_then_torch_loaded_is_refused(genuine, tmp_path):
    """The two-step attack: a pickle on disk, then a stored config that torch.load-s it with weights_only=False."""
    marker = tmp_path / "unpickled.txt"
    bad_pickle = tmp_path / "payload.pt"
    torch.save(_Payload(str(marker)), bad_pickle)
    assert not marker.exists()
    payload = {"_target_": "torch.load", "f": str(bad_pickle), "weights_only": False}
    path = crafted(genuine, tmp_path, "model", "mean", payload)  # hidden in a field the network does not need
    assert_refused(lambda: load_classifier(path), marker, "model.mean=")


def test_payload_in_an_unused_model_field_is_refused_with_expectations_set(genuine, tmp_path):
    marker = tmp_path / "unused.txt"
    config = genuine[0]
    payload = {"_target_": "builtins.open", "file": str(marker), "mode": "w", "_partial_": True}
    path = crafted(genuine, tmp_path, "model", "mean", payload)
    assert_refused(
        lambda: load_classifier(path, expect_dataset="digits", expect_model=config["model"]["_target_"]),
        marker,
        "model.mean=",
    )


@pytest.mark.slow
def test_payload_nested_in_dataset_is_refused_by_eval(genuine, tmp_path):
    from hydra import compose, initialize_config_dir

    from afd_lightning.evaluate import run

    marker = tmp_path / "dataset.txt"
    config = pickle.loads(pickle.dumps(genuine[0]))
    config["dataset"]["meta"]["extra"] = [{"_target_": "builtins.open", "file": str(marker), "mode": "w"}]
    path = write_checkpoint(tmp_path / "crafted.ckpt", config, genuine[1])
    overrides = [
        f"ckpt_path={path}",
        "attack=fgsm",
        "analyses=false",
        "plots=false",
        "progress=false",
        "n_samples=8",
        f"output_dir={tmp_path / 'eval'}",
    ]
    with initialize_config_dir(config_dir=str(config_dir("eval")), version_base="1.3"):
        cfg = compose(config_name="eval", overrides=overrides)
    assert_refused(lambda: run(cfg), marker, "dataset.meta.extra=")
    assert not (tmp_path / "eval" / "COMPLETE").exists()


def test_attribute_walks_through_our_modules_are_refused():
    """A prefix check would pass ``afd_lightning.train.os.system``; the allow-list compares whole names."""
    for target in (
        "afd_lightning.train.os.system",
        "afd_lightning.store.checkpoint.torch.load",
        "afd_lightning.evaluation.report.writer.write_json",
        "afd_lightning.nets.build.build_model",
    ):
        with pytest.raises(UnsafeConfigError):
            check_stored({"model": {"_target_": target}})


def test_allow_list_holds_our_builders_and_torch_optim_only():
    allowed = allowed_targets()
    for name in (
        "afd_lightning.nets.resnet5",
        "afd_lightning.data.DigitsDataModule",
        "afd_lightning.methods.AFD",
        "afd_lightning.nets.AdversarialDecoder",
        "torch.optim.SGD",
        "torch.optim.lr_scheduler.MultiStepLR",
        "afd_lightning.attacks.AttackFactory",
    ):
        assert name in allowed, name
    outside = [k for k in allowed if not k.startswith(("afd_lightning.", "torch.optim."))]
    assert outside == []
    check_stored(
        {
            "method": {
                "_target_": "afd_lightning.methods.AFD",
                "optimizer_cls": {"_target_": "torch.optim.SGD", "_partial_": True},
            }
        }
    )  # no error


def test_stored_attack_class_must_be_an_attack():
    """A stored method's attack names its class by import path; only attack classes may be named."""
    good = {
        "attack": {"_target_": "afd_lightning.attacks.AttackFactory", "attack_cls": "advertorch.attacks.LinfPGDAttack"}
    }
    check_stored(good)  # no error
    check_stored({"attack": {**good["attack"], "attack_cls": "afd_lightning.attacks.apgd.APGDCE"}})
    for bad in ("subprocess.Popen", "builtins.open", "advertorch.attacks.base.os", "torch.load"):
        with pytest.raises(UnsafeConfigError, match="attack.attack_cls"):
            check_stored({"attack": {**good["attack"], "attack_cls": bad}}, prefix="")
