"""The model card of an export takes strings from a checkpoint and a results file as data (issue 27, break 5)."""

from __future__ import annotations

import re

import pytest
import yaml

from afd_lightning.share.card import model_card
from afd_lightning.store.export import ExportError

HOSTILE = (
    "mnist\n---\nbase_model: evil/model\ninference: true\nlicense: other\n<script>alert(1)</script> [x](http://e.vil)"
)


def _config(**recipe):
    base = {
        "method": "AFD",
        "dataset": {"name": "digits", "batch_size": 50, "meta": {"eps": 0.2, "channels": 1, "image_size": 8}},
        "attack": {"name": "pgd", "eps": 0.2, "steps": 10},
        "max_epochs": 30,
        "precision": "32",
        "seed": 0,
    }
    base.update(recipe)
    return {"model": {"_target_": "afd_lightning.nets.resnet5"}, "embed_dim": 200, "recipe": base}


@pytest.mark.parametrize("where", ["method", "dataset", "command"])
def test_hostile_strings_add_no_front_matter_key_line_html_or_link(where):
    config = _config()
    provenance = {"command": "train.py", "commit": "abc", "versions": {}, "wall_s": 3.0}
    if where == "method":
        config["recipe"]["method"] = HOSTILE
    elif where == "dataset":
        config["recipe"]["dataset"]["name"] = HOSTILE
    else:
        provenance["command"] = HOSTILE
    card = model_card(config, provenance, {}, {}, "last.ckpt")
    front = card.split("---\n")[1]
    assert set(yaml.safe_load(front)) == {"library_name", "license", "tags", "datasets"}
    assert yaml.safe_load(front)["license"] == "mit"
    outside_code = re.sub(r"(`+)[^`]*?\1", "", card)  # a code span shows HTML and links as text
    assert "<script>" not in outside_code and "](http://e.vil)" not in outside_code
    assert not any(line.startswith(("base_model", "inference", "license: other")) for line in card.splitlines())


def test_labels_from_results_add_no_lines_and_accuracies_must_be_numbers():
    rows = {"AFD\n# heading\n| x |": {"Clean": 0.9, "PGD\n|---|": 0.5}}
    card = model_card(_config(), None, rows, {"n_samples": 8, "table_eps": 0.2}, "last.ckpt")
    assert "\n# heading" not in card and "\n|---|\n|" not in card.replace("|---|---|", "")
    from afd_lightning.share.card import _number

    with pytest.raises(ExportError, match="not a number"):
        _number("9" * 4_000_000, "AFD: clean_accuracy")
