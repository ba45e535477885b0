"""afd-eval's loading: export folders beside checkpoints, the dataset is the checkpoint's, stored method and names
checked and capped before they reach a report."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from afd_lightning.errors import AFDUserError, ConfigError
from afd_lightning.evaluate import run
from afd_lightning.evaluation import loading
from afd_lightning.share.export import export
from afd_lightning.store.stored_config import OutsideCodeError

from helpers.crafted import genuine_parts, write
from helpers.evaluation import compose_eval


@pytest.fixture(scope="module")
def parts():
    return genuine_parts("nt")


@pytest.fixture(scope="module")
def ckpt(parts, tmp_path_factory):
    return write(tmp_path_factory.mktemp("run") / "last.ckpt", *parts)


@pytest.fixture(scope="module")
def exported(ckpt, tmp_path_factory):
    return export(ckpt, tmp_path_factory.mktemp("share") / "model")


@pytest.mark.slow
def test_export_folders_and_checkpoints_evaluate_side_by_side(ckpt, exported, tmp_path):
    cfg = compose_eval(
        [f"ckpt_path=[{exported},{ckpt}]", "attack=fgsm", "n_samples=10", "plots=false", "threads=1"], tmp_path
    )
    results = run(cfg)
    assert results.complete and results.dataset == "digits" and len(results.models) == 2
    assert sorted(results.checkpoints.values()) == sorted([str(exported), str(ckpt)])
    records = list(results.models.values())
    assert records[0].clean_accuracy == records[1].clean_accuracy  # the same weights, read two ways
    assert sorted(p.name for p in exported.iterdir()) == ["README.md", "config.json", "model.safetensors"]


def test_an_export_naming_outside_code_needs_trust(exported, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    for f in exported.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    config = json.loads((folder / "config.json").read_text())
    config["model"]["_target_"] = "mynets.SmallCNN"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(OutsideCodeError, match=r"trust=\['mynets'\]"):
        loading.LoadedModel(str(folder))


def test_a_folder_without_a_model_is_refused_in_one_line(tmp_path):
    with pytest.raises(
        AFDUserError, match=r"is a folder with neither a checkpoint .* nor the config.json of an afd-export"
    ):
        loading.LoadedModel(str(tmp_path))


def test_the_dataset_is_the_checkpoints_unless_cross_dataset(ckpt, exported):
    first = loading.LoadedModel(str(exported))
    assert loading.evaluation_dataset(OmegaConf.create({"dataset": None}), first) is first.config["dataset"]
    assert loading.evaluation_dataset(OmegaConf.create({"dataset": "digits"}), first) is first.config["dataset"]
    with pytest.raises(ConfigError, match=rf"dataset=mnist but {exported} was trained on 'digits'.*cross_dataset=true"):
        loading.evaluation_dataset(OmegaConf.create({"dataset": "mnist"}), first)
    chosen = loading.evaluation_dataset(OmegaConf.create({"dataset": "mnist10k", "cross_dataset": True}), first)
    assert chosen["meta"]["name"] == "mnist10k" and "data_dir" not in chosen and "defaults" not in chosen
