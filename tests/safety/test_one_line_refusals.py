"""Issue 27, breaks 7 and 11: every crafted value ends in one clear line, and an export loads only its own dtypes.

* Deep nesting (900 levels, well under the node bound) in an export's ``config.json``, in a checkpoint's
  ``model.mean`` (``load_classifier``), and anywhere in a checkpoint read by ``load_from_checkpoint``: an
  ``AFDUserError`` naming the file (and the key where the file was parsed), never ``RecursionError``.
* Wrongly shaped values in parts of a checkpoint no schema covered (``dataset.meta`` a list, ``afd_lightning``
  a list, a ``state_dict`` entry that is not a tensor): an ``AFDUserError`` naming the key, never
  ``AttributeError``/``TypeError``/``KeyError``.
* An export whose tensors are float64 or uint64 instead of the network's float32 is refused; its own float32
  tensors load.

(The resume's share of break 7 is in test_resume_reads_once.py.)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from afd_lightning.errors import AFDUserError
from afd_lightning.methods import RobustMethod
from afd_lightning.nets import resnet5
from afd_lightning.store.classifier import load_classifier

from helpers.crafted import genuine_parts, write


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    return genuine_parts("nt", tmp_path_factory.mktemp("one_line") / "run")


def deep(levels: int):
    value: list = [0.5]
    for _ in range(levels):
        value = [value]
    return value


def save_deep(path: Path, config: dict, state: dict) -> Path:
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)  # torch.save pickles recursively; the crafted nesting needs room to be written
    try:
        return write(path, config, state)
    finally:
        sys.setrecursionlimit(limit)


def one_line(fn, *fragments) -> str:
    with pytest.raises(AFDUserError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message and len(message) < 1000, message
    for fragment in fragments:
        assert fragment in message, message
    return message


# ------------------------------------------------------------------------------------- deep nesting
def test_a_deep_model_mean_in_a_checkpoint_is_one_line(parts, tmp_path):
    config = {**parts[0], "model": {**parts[0]["model"], "mean": deep(900)}}
    path = save_deep(tmp_path / "deep.ckpt", config, parts[1])
    one_line(lambda: load_classifier(path), str(path), "model.mean", "nested more than")


def test_a_deep_value_anywhere_is_one_line_for_load_from_checkpoint(parts, tmp_path):
    config = {**parts[0], "trainer": {**parts[0]["trainer"], "plugins": deep(900)}}
    path = save_deep(tmp_path / "deep.ckpt", config, parts[1])
    one_line(lambda: RobustMethod.load_from_checkpoint(path), str(path), "trainer.plugins")


def export_folder(tmp_path: Path, model_block, state: dict | None = None) -> Path:
    folder = tmp_path / "export"
    folder.mkdir()
    config = {"format": "afd-lightning-export", "format_version": 1, "model": model_block}
    (folder / "config.json").write_text(json.dumps(config))
    if state is not None:
        save_file(state, str(folder / "model.safetensors"))
    return folder


def test_a_deep_config_json_in_an_export_is_one_line(tmp_path):
    text = '{"format": "afd-lightning-export", "format_version": 1, "model": {"_target_": "afd_lightning.nets.resnet5", "mean": '
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "config.json").write_text(text + "[" * 900 + "0.5" + "]" * 900 + "}}")
    one_line(lambda: load_classifier(folder), "config.json", "nested deeper than")


# ------------------------------------------------------------------------------------- wrong shapes
@pytest.mark.parametrize(
    ("edit", "fragment", "expect"),
    [
        (lambda c: c["dataset"].update(meta=["digits"]), "dataset.meta", {"expect_dataset": "digits"}),
        (lambda c: c.update(model=["afd_lightning.nets.resnet5"]), "model", {"expect_model": "resnet5"}),
        (lambda c: c["dataset"]["meta"].update(name=["digits"]), "dataset.meta.name", {"expect_dataset": "digits"}),
    ],
)
def test_a_wrongly_shaped_config_block_is_one_line(parts, tmp_path, edit, fragment, expect):
    config = json.loads(json.dumps(parts[0]))
    edit(config)
    path = write(tmp_path / "shaped.ckpt", config, parts[1])
    one_line(lambda: load_classifier(path, **expect), str(path), fragment)


def test_a_state_dict_entry_that_is_not_a_tensor_is_one_line(parts, tmp_path):
    state = {**parts[1], "model.classifier.bias": [0.0] * 10}
    path = write(tmp_path / "state.ckpt", parts[0], state)
    one_line(lambda: load_classifier(path), "state_dict['model.classifier.bias']")


def test_a_list_as_our_own_block_is_one_line(parts, tmp_path):
    path = tmp_path / "ours.ckpt"
    torch.save({"state_dict": parts[1], "hyper_parameters": parts[0], "afd_lightning": ["NaturalTraining"]}, path)
    one_line(lambda: load_classifier(path), "afd_lightning")


# ------------------------------------------------------------------------------------- 11. export dtypes
@pytest.fixture
def network_state():
    torch.manual_seed(0)
    model = resnet5(in_channels=1, num_classes=10, stem_stride=1)
    block = {"_target_": "afd_lightning.nets.resnet5", "in_channels": 1, "num_classes": 10, "stem_stride": 1}
    return block, {k: v.clone().contiguous() for k, v in model.state_dict().items()}


def test_an_export_of_the_networks_own_dtypes_loads(tmp_path, network_state):
    block, state = network_state
    model = load_classifier(export_folder(tmp_path, block, state))
    assert torch.equal(model.classifier.bias, state["classifier.bias"])


@pytest.mark.parametrize("dtype", [torch.float64, torch.uint64, torch.float16])
def test_an_export_of_other_dtypes_is_refused(tmp_path, network_state, dtype):
    block, state = network_state
    cast = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in state.items()}
    name = str(dtype).removeprefix("torch.")
    one_line(
        lambda: load_classifier(export_folder(tmp_path, block, cast)), "model.safetensors", f"is {name}", "float32"
    )
