"""Issue 27, break 3: a stored network is sized from its arguments and refused before any module exists.

Each network of the allow-list gets its largest legal argument (found on its size function, whose exactness
tests/nets/test_sizes.py checks against built networks) and one step beyond: the first passes the check, the
second is refused at once, with the time and the Python memory of the refusal as observables. The issue's two
crafted inputs (an export's 119-byte model block with ``wide_resnet depth=600004``; a checkpoint's
``resnet18 num_blocks=[100000] planes=[1]``) took more than 1.5 GB within 30 s before; they are refused through
``load_classifier`` here.
"""

from __future__ import annotations

import json
import time
import tracemalloc

import pytest

from afd_lightning.store.build import MAX_MODULES, MAX_PARAMETERS, check_size, network_size
from afd_lightning.store.classifier import load_classifier
from afd_lightning.store.schema import checked_slot
from afd_lightning.store.stored_config import StoredConfigLimitError, check_stored_network

from helpers.crafted import edited, genuine_parts

NETS = "afd_lightning.nets."
# (slot, target, arguments for a value n of the growing argument, smallest n, step): one case per network, growing
# the argument that makes it large (parameters for widths and classes, modules for depths and block counts).
CASES = {
    "resnet5-embed_dim": ("model", "resnet5", lambda n: {"embed_dim": n}, 1, 1),
    "resnet18-blocks": ("model", "resnet18", lambda n: {"num_blocks": [n], "planes": [1]}, 1, 1),
    "resnet18-width": ("model", "resnet18", lambda n: {"num_blocks": [1], "planes": [n]}, 1, 1),
    "preact_resnet18-blocks": ("model", "preact_resnet18", lambda n: {"num_blocks": [n], "planes": [1]}, 1, 1),
    "wide_resnet-depth": ("model", "wide_resnet", lambda n: {"depth": 6 * n + 4, "widen_factor": 1}, 1, 1),
    "wide_resnet-widen": ("model", "wide_resnet", lambda n: {"depth": 10, "widen_factor": n}, 1, 1),
    "wide_resnet34_10-classes": ("model", "wide_resnet34_10", lambda n: {"num_classes": n}, 1, 1),
    "lenet-image_size": ("model", "lenet", lambda n: {"image_size": n}, 8, 1),
    "image_classifier-embed_dim": (
        "model",
        "ImageClassifier",
        lambda n: {"body": {"_target_": NETS + "resnet5"}, "embed_dim": n, "num_classes": 10},
        1,
        1,
    ),
    "discriminator-layers": (
        "discriminator",
        "AdversarialDecoder",
        lambda n: {"num_classes": 10, "num_hidden_layers": n},
        1,
        1,
    ),
    "discriminator-width": (
        "discriminator",
        "AdversarialDecoder",
        lambda n: {"num_classes": 10, "hidden_dim": n},
        1,
        1,
    ),
}


def refused_or_passed(slot: str, node: dict) -> bool:
    """Whether the check passes ``node`` (nothing of ours is built)."""
    try:
        if slot == "model":
            check_stored_network(node, "crafted")
        else:
            checked, resolved = checked_slot(node, slot, "crafted")  # embed_dim: the model's (code passes it)
            check_size(network_size({**checked, "embed_dim": 200}, resolved, "crafted", slot), "crafted", slot)
    except StoredConfigLimitError:
        return False
    return True


def largest_legal(slot, target, arguments, smallest) -> int:
    """The largest n the size limits allow (size grows with n): bisection between n and 2**28 (values stay ints)."""
    lo, hi = smallest, 2**28
    assert refused_or_passed(slot, {"_target_": target, **arguments(lo)})
    assert not refused_or_passed(slot, {"_target_": target, **arguments(hi)})
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if refused_or_passed(slot, {"_target_": target, **arguments(mid)}) else (lo, mid)
    return lo


def measured(fn):
    """(what ``fn()`` returned or raised, seconds, peak Python memory in bytes)."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        outcome = fn()
    except Exception as err:  # noqa: BLE001 - returned to the test, which asserts its type
        outcome = err
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return outcome, elapsed, peak


@pytest.mark.parametrize("case", list(CASES))
def test_largest_legal_arguments_pass_and_one_step_beyond_is_refused_at_once(case):
    slot, name, arguments, smallest, step = CASES[case]
    target = NETS + name
    n = largest_legal(slot, target, arguments, smallest)
    assert refused_or_passed(slot, {"_target_": target, **arguments(n)})
    passed, elapsed, peak = measured(lambda: refused_or_passed(slot, {"_target_": target, **arguments(n + step)}))
    assert passed is False, "one step beyond the largest legal arguments was not refused"
    assert elapsed < 1.0 and peak < 5_000_000, (elapsed, peak)


def test_the_limits_are_the_documented_ones():
    assert (MAX_PARAMETERS, MAX_MODULES) == (200_000_000, 10_000)


def test_a_deep_wide_resnet_in_an_export_folder_is_refused_before_building(tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    model = {"_target_": NETS + "wide_resnet", "depth": 600004}
    assert len(json.dumps(model)) < 119  # the model block, in a config.json of our format
    config = {"format": "afd-lightning-export", "format_version": 1, "model": model}
    (folder / "config.json").write_text(json.dumps(config))
    error, elapsed, peak = measured(lambda: load_classifier(folder))
    assert isinstance(error, StoredConfigLimitError), error
    assert "config.json" in str(error) and "so nothing was built" in str(error)
    assert elapsed < 2.0 and peak < 20_000_000, (elapsed, peak)


@pytest.mark.slow
def test_a_checkpoint_with_a_hundred_thousand_blocks_is_refused_before_building(tmp_path):
    parts = genuine_parts("nt", tmp_path / "run")
    crafted = edited(
        parts,
        tmp_path / "blocks.ckpt",
        lambda c: c.update(model={"_target_": NETS + "resnet18", "num_blocks": [100000], "planes": [1]}),
    )
    error, elapsed, peak = measured(lambda: load_classifier(crafted))
    assert isinstance(error, StoredConfigLimitError), error
    assert str(crafted) in str(error) and "700,010 modules" in str(error)
    assert elapsed < 2.0 and peak < 20_000_000, (elapsed, peak)
