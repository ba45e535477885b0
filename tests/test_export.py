"""afd-export: a model folder of JSON + safetensors + model card that load_classifier reads without pickle."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch

import afd_lightning
from afd_lightning.share.export import export, main
from afd_lightning.store.export import ExportError
from afd_lightning.store.stored_config import UnsafeConfigError

from helpers import zygote
from helpers.compose import compose_train

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    from afd_lightning.train import run

    out = tmp_path_factory.mktemp("export_run")
    run(compose_train(["method=nt", "+trainer.limit_train_batches=2", "test_after_fit=false"], out))
    return out / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def folder(ckpt, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exported") / "model"
    main([str(ckpt), str(out)])
    return out


@pytest.mark.slow
def test_folder_holds_no_pickle_and_loads_to_the_same_outputs(ckpt, folder):
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    from safetensors import safe_open

    for f in folder.iterdir():  # every file opened with a reader that cannot run code
        head = f.read_bytes()[:4]
        assert not head.startswith(b"\x80") and not head.startswith(b"PK"), f.name
        if f.suffix == ".json":
            json.loads(f.read_text())
        elif f.suffix == ".safetensors":
            with safe_open(str(f), framework="pt") as weights:
                keys = list(weights.keys())
            assert keys and all(k.startswith(("encoder.", "classifier.")) for k in keys)
        else:
            assert f.read_text().startswith("---\nlibrary_name: afd-lightning")
    card = (folder / "README.md").read_text()
    for section in ("## Method", "## Recipe", "## Threat model", "## Training time", "## Provenance", "## Licence"):
        assert section in card
    assert "NaturalTraining" in card and "digits" in card
    config = json.loads((folder / "config.json").read_text())
    assert config["model"]["_target_"] == "afd_lightning.nets.resnet5" and config["num_classes"] == 10

    x = torch.rand(4, 1, 8, 8)
    with pytest.MonkeyPatch.context() as mp:  # no pickle may be read on the way
        mp.setattr(pickle, "loads", lambda *a, **k: pytest.fail("pickle.loads called"))
        mp.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load called"))
        from_folder = afd_lightning.load_classifier(folder)
    from_ckpt = afd_lightning.load_classifier(ckpt)
    assert not from_folder.training
    assert torch.equal(from_folder(x), from_ckpt(x))


def test_card_gets_the_evaluation_accuracies(ckpt, tmp_path):
    results = {
        "complete": True,
        "dataset": "digits",
        "family": "digits",
        "table_eps": 0.2,
        "n_samples": 8,
        "test_set_size": 360,
        "seed": 0,
        "sweep_mode": "survivors",
        "device": "cpu",
        "models": {
            "NT": {
                "clean_accuracy": 0.875,
                "n_samples": 8,
                "attacks": {
                    "pgd_linf": {
                        "attack": "pgd_linf",
                        "norm": "linf",
                        "eps": [0.0, 0.2],
                        "accuracy": [0.875, 0.125],
                        "n_samples": 8,
                        "label": "PGD-L∞",
                    }
                },
            }
        },
    }
    from afd_lightning.evaluation.report.schema import SCHEMA_VERSION

    results["schema_version"] = SCHEMA_VERSION
    (tmp_path / "results.json").write_text(json.dumps(results))
    out = export(ckpt, tmp_path / "model", results=tmp_path / "results.json")
    card = (out / "README.md").read_text()
    assert "| Clean | PGD-L∞ |" in card and "| 87.5 | 12.5 |" in card
    assert afd_lightning.load_classifier(out) is not None  # results.json beside the weights is allowed


def test_a_pickle_in_the_folder_is_refused(folder, tmp_path):
    crafted = tmp_path / "crafted"
    shutil.copytree(folder, crafted)
    (crafted / "pytorch_model.bin").write_bytes(pickle.dumps({"weights": 1}))
    with pytest.raises(ExportError, match=r"pytorch_model.bin .*pickle"):
        afd_lightning.load_classifier(crafted)
    (crafted / "pytorch_model.bin").unlink()
    (crafted / "model.safetensors").write_bytes(pickle.dumps({"weights": 1}))  # a pickle under the right name
    with pytest.raises(ExportError, match="model.safetensors .*pickle"):
        afd_lightning.load_classifier(crafted)


@pytest.mark.parametrize(
    "target", ["builtins.exec", "os.system", "pathlib.Path.write_text", "torch.load", "mynets.SmallCNN"]
)
def test_a_target_outside_the_allow_list_is_refused(folder, tmp_path, target):
    crafted = tmp_path / "crafted"
    shutil.copytree(folder, crafted)
    config = json.loads((crafted / "config.json").read_text())
    config["model"]["_target_"] = target
    (crafted / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsafeConfigError):
        afd_lightning.load_classifier(crafted)


@pytest.mark.slow
def test_cli_refuses_a_folder_that_is_not_empty(ckpt, tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "x.txt").write_text("mine")
    proc = zygote.run(["afd-export", str(ckpt), str(tmp_path / "model")], timeout=300)
    assert proc.returncode == 1 and "is not an empty folder" in proc.stderr
    assert (tmp_path / "model" / "x.txt").read_text() == "mine"


def test_expect_checks_apply_to_an_export_as_to_a_checkpoint(ckpt, folder):
    from afd_lightning.errors import CheckpointError

    for path in (ckpt, folder):
        assert afd_lightning.load_classifier(path, expect_dataset="digits", expect_model="resnet5") is not None
        with pytest.raises(CheckpointError, match=r"was trained on dataset 'digits', not 'cifar10'"):
            afd_lightning.load_classifier(path, expect_dataset="cifar10")
        with pytest.raises(CheckpointError, match=r"network, not resnet18"):
            afd_lightning.load_classifier(path, expect_model="resnet18")
