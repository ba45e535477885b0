"""Models side by side are labelled by what differs between them, not AT and AT-2."""

from __future__ import annotations

import copy

from afd_lightning.evaluation.labels import distinct_labels


def _config(seed=0, beta=6.0, lr=0.1):
    return {
        "seed": seed,
        "method": {"_target_": "afd_lightning.methods.TRADES", "beta": beta, "optimizer": {"lr": lr}},
        "model": {"_target_": "afd_lightning.nets.resnet5", "channels_last": False},
        "dataset": {"meta": {"name": "digits"}, "num_workers": 0},
        "paths": {"output_dir": f"/runs/{seed}"},
        "threads": 1,
    }


def test_two_seeds_are_labelled_by_seed():
    labels = distinct_labels(["AT", "AT"], [_config(0), _config(1)], ["/r/a/checkpoints/last.ckpt"] * 2)
    assert labels == ["AT (seed=0)", "AT (seed=1)"]


def test_recipe_difference_and_unique_names_kept():
    configs = [_config(beta=1.0), _config(beta=6.0), _config()]
    labels = distinct_labels(["TRADES", "TRADES", "NT"], configs, ["a.ckpt", "b.ckpt", "c.ckpt"])
    assert labels == ["TRADES (method.beta=1.0)", "TRADES (method.beta=6.0)", "NT"]


def test_runtime_keys_do_not_count_and_same_recipe_falls_back_to_the_run_directory():
    a, b = _config(), copy.deepcopy(_config())
    b["threads"], b["dataset"]["num_workers"], b["model"]["channels_last"] = 2, 4, True  # how it ran, not what
    labels = distinct_labels(
        ["AT", "AT"], [a, b], ["/logs/at/2026-01-01/checkpoints/last.ckpt", "/logs/at/2026-01-02/checkpoints/best.ckpt"]
    )
    assert labels == ["AT (2026-01-01)", "AT (2026-01-02/best.ckpt)"]


def test_the_same_file_twice_stays_distinct():
    labels = distinct_labels(["AT", "AT"], [_config(), _config()], ["/r/x/checkpoints/last.ckpt"] * 2)
    assert len(set(labels)) == 2 and labels[0] == "AT (x)"
