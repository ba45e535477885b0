"""Issue 27, break 4, and issue 30, item 9: under ``trust=[pkg]`` the file names a network class, nothing else.

A user's package ``mynets`` holds, besides its network, a ``__main__.py``, a private module and a maintenance
function; each leaves a marker file when it runs (at import or when called). A stored config naming any of them
is refused, naming the key, and no marker appears. A wrong trust name is answered at once, naming the module
that was not found or not trusted; ``load_classifier`` never imports Lightning (a fresh process checks).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from afd_lightning.store.classifier import load_classifier
from afd_lightning.store.stored_config import OutsideCodeError, UnsafeConfigError

from helpers.compose import REPO
from helpers.crafted import edited, genuine_parts

NETWORK = """
from torch import nn


class SmallNet(nn.Module):
    def __init__(self, num_classes: int = 10, embed_dim: int = 16):
        super().__init__()
        self.embed_dim, self.num_classes = embed_dim, num_classes
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(64, embed_dim), nn.ReLU())
        self.classifier = nn.Linear(embed_dim, num_classes)

    def forward_with_embedding(self, x):
        z = self.encoder(x)
        return z, self.classifier(z)

    def forward(self, x):
        return self.forward_with_embedding(x)[1]
"""


def marker_module(marker, body: str = "") -> str:
    return f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n{textwrap.dedent(body)}"


@pytest.fixture
def mynets(tmp_path, monkeypatch):
    """The package ``mynets`` on sys.path; returns the folder where its markers would appear."""
    markers = tmp_path / "markers"
    markers.mkdir()
    package = tmp_path / "pkg" / "mynets"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(NETWORK)
    (package / "__main__.py").write_text(marker_module(markers / "main", NETWORK))
    (package / "_private.py").write_text(marker_module(markers / "private", NETWORK))
    (package / "maintenance.py").write_text(
        "import pathlib\n\n\n"
        f"def clear_cache(tag: str = ''):\n    pathlib.Path({str(markers / 'called')!r}).write_text(tag)\n\n\n"
        "from torch import nn\n\n\n"
        f"class Plain(nn.Module):\n    def __init__(self, width: int = 4):\n"
        f"        pathlib.Path({str(markers / 'constructed')!r}).write_text('x')\n        super().__init__()\n"
    )
    monkeypatch.syspath_prepend(str(package.parent))
    yield markers
    for name in [m for m in sys.modules if m == "mynets" or m.startswith("mynets.")]:
        sys.modules.pop(name)


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    return genuine_parts("nt", tmp_path_factory.mktemp("trust") / "run")


def crafted(parts, tmp_path, model: dict):
    return edited(parts, tmp_path / "crafted.ckpt", lambda c: c.update(model=model))


@pytest.mark.parametrize(
    ("model", "fragment"),
    [
        ({"_target_": "mynets.__main__.SmallNet"}, "'__main__'"),
        ({"_target_": "mynets._private.SmallNet"}, "'_private'"),
        ({"_target_": "mynets.maintenance.clear_cache", "tag": "from the file"}, "not a network class"),
        ({"_target_": "mynets.maintenance.Plain", "width": 2}, "without forward, forward_with_embedding"),
        ({"_target_": "mynets.maintenance.pathlib.Path"}, "model._target_"),
    ],
)
@pytest.mark.slow
def test_only_a_network_class_of_the_trusted_package_is_reached(mynets, parts, tmp_path, model, fragment):
    path = crafted(parts, tmp_path, model)
    with pytest.raises(UnsafeConfigError) as info:
        load_classifier(path, trust=["mynets"])
    assert fragment in str(info.value) and "model._target_" in str(info.value)
    assert not (mynets / "main").exists() and not (mynets / "private").exists(), "a module ran that was never named"
    assert not (mynets / "called").exists() and not (mynets / "constructed").exists(), "the file's target was called"


def test_the_trusted_network_class_still_loads(mynets, parts, tmp_path):
    path = crafted(parts, tmp_path, {"_target_": "mynets.SmallNet", "embed_dim": 16})
    with pytest.raises(Exception, match="does not match"):  # built (trusted), then the NT run's weights do not fit
        load_classifier(path, trust=["mynets"])
    assert not any(mynets.iterdir())


@pytest.mark.parametrize(
    ("trust", "fragments", "error"),
    [
        (["mynetz"], ["module mynets", "not trusted", "trust=['mynetz']"], OutsideCodeError),
        (["mynets.sub"], ["module mynets", "not trusted"], OutsideCodeError),
    ],
)
def test_a_wrong_trust_name_says_which_module_is_not_trusted(mynets, parts, tmp_path, trust, fragments, error):
    path = crafted(parts, tmp_path, {"_target_": "mynets.SmallNet"})
    start = time.perf_counter()
    with pytest.raises(error) as info:
        load_classifier(path, trust=trust)
    assert time.perf_counter() - start < 2.0
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_a_trusted_package_that_is_not_installed_is_named(parts, tmp_path):
    path = crafted(parts, tmp_path, {"_target_": "notinstalled_nets.models.SmallNet"})
    start = time.perf_counter()
    with pytest.raises(UnsafeConfigError, match="module notinstalled_nets was not found"):
        load_classifier(path, trust=["notinstalled_nets"])
    assert time.perf_counter() - start < 2.0


@pytest.mark.slow
def test_load_classifier_answers_without_importing_lightning(parts, tmp_path):
    """A fresh process: a genuine checkpoint loads, and a wrong trust name is answered, without pytorch_lightning."""
    good = crafted(parts, tmp_path, parts[0]["model"])
    bad = edited(parts, tmp_path / "mine.ckpt", lambda c: c.update(model={"_target_": "mynets.SmallNet"}))
    script = textwrap.dedent(
        f"""
        import sys, time
        import torch
        import afd_lightning
        start = time.perf_counter()
        model = afd_lightning.load_classifier({str(good)!r})
        loaded = time.perf_counter() - start
        try:
            afd_lightning.load_classifier({str(bad)!r}, trust=["mynetz"])
        except afd_lightning.errors.AFDUserError as err:
            print("refused:", err)
        print("lightning imported:", "pytorch_lightning" in sys.modules, "load seconds:", round(loaded, 2))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "lightning imported: False" in done.stdout, done.stdout
    assert "refused:" in done.stdout and "module mynets" in done.stdout and "not trusted" in done.stdout
