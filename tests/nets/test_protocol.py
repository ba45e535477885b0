"""The network interface: checked once at build time, every missing member listed, foreign keys named."""

from __future__ import annotations

import pytest
from torch import nn

from afd_lightning.errors import ConfigError
from afd_lightning.nets import RobustClassifier, check_network, resnet5
from afd_lightning.nets.build import build_model
from afd_lightning.nets.protocol import check_arguments


class OnlyEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Flatten()
        self.embed_dim = 0

    def forward(self, x):
        return self.encoder(x)


def test_shipped_network_fits_the_protocol():
    model = resnet5(num_classes=10, stem_stride=1)
    assert isinstance(model, RobustClassifier)
    check_network(model)


def test_error_lists_every_missing_member():
    with pytest.raises(ConfigError) as err:
        check_network(OnlyEncoder(), "mynets.OnlyEncoder")
    message = str(err.value)
    assert "mynets.OnlyEncoder" in message
    for member in ("classifier (missing", "num_classes (missing", "forward_with_embedding (missing", "embed_dim is 0"):
        assert member in message
    assert "encoder (missing" not in message
    assert "docs/byon.md" in message


def test_build_model_checks_the_interface(tmp_path, monkeypatch):
    (tmp_path / "half_net.py").write_text(
        "from torch import nn\n\nclass Net(nn.Module):\n    def __init__(self, width=4):\n"
        "        super().__init__()\n        self.encoder = nn.Flatten()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as err:
        build_model({"_target_": "half_net.Net", "width": 4})
    for member in ("classifier", "embed_dim", "num_classes", "forward_with_embedding"):
        assert f"{member} (missing" in str(err.value)


def test_resnet_only_key_is_named_for_another_network():
    cfg = {"_target_": "afd_lightning.nets.lenet", "num_classes": 10, "stem_stride": 1, "image_size": 8}
    with pytest.raises(ConfigError) as err:
        check_arguments(cfg)
    message = str(err.value)
    assert "takes no argument stem_stride" in message and "model=<name>" in message


def test_misspelt_model_key_gets_the_closest_argument():
    with pytest.raises(ConfigError, match=r"no option model.stem_strid; did you mean model.stem_stride\?"):
        check_arguments({"_target_": "afd_lightning.nets.resnet5", "stem_strid": 1})
