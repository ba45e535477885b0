"""Issue 26, item 4: every argument a stored config sets is type-checked, and what cannot be checked is refused.

Each slot of genuine stored configs (every dataset's, method's and training attack's blocks, and inside the
methods the optimizers, the scheduler and the discriminator) gets, for each of its arguments, a value of every
JSON type (null, boolean, integer, number, string, array, object). A value of a type the argument does not take
must be refused with an error naming the key. Which types an argument takes is read from the genuine value (a
number also takes an integer) and, for the few optional arguments, from the list below, not from the checker.
"""

from __future__ import annotations

import copy

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from afd_lightning.config.paths import config_dir
from afd_lightning.store.stored_config import UnsafeConfigError, check_slot, never_from_file

PROBES = {"null": None, "boolean": True, "integer": 7, "number": 0.5, "string": "x", "array": [1], "object": {"a": 1}}
# Arguments that also take null (their default is None: the class picks a value), by name.
TAKES_NULL = {"mean", "std", "gradient_clip_val", "step_size", "steps", "name", "rand_init"}
# Arguments whose genuine value is null but that take something else too.
WHEN_NULL = {"gradient_clip_val": {"null", "integer", "number"}, "mean": {"null", "array"}, "std": {"null", "array"}}
# Blocks that hold nested config blocks or free-form data, checked by their own rules (tests/safety/test_stored_schema.py).
NOT_A_VALUE = {"meta", "_target_", "_partial_", "_args_"}


def json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def accepted(key: str, genuine) -> set[str]:
    if genuine is None:
        return WHEN_NULL.get(key, {"null"})
    kinds = {json_type(genuine)}
    if kinds == {"number"}:
        kinds.add("integer")  # an integer is a number too
    if key in TAKES_NULL:
        kinds.add("null")
    return kinds


def genuine_blocks() -> list[tuple[str, str, dict]]:
    """(slot, path, block) of every block a genuine stored config holds, nested blocks with their own slot."""
    overrides = [("digits", "afd", "pgd_linf"), ("mnist10k", "trades", "mim"), ("cifar10", "match", "apgd_ce")]
    overrides += [("digits", "at", "pgd_l2"), ("mnist", "nt", "fgsm")]
    blocks: dict[tuple[str, str], dict] = {}

    def walk(slot: str, path: str, node: dict) -> None:
        blocks.setdefault((slot, node["_target_"]), (slot, path, node))
        for key, value in node.items():
            if isinstance(value, dict) and "_target_" in value:
                sub = "optimizer" if key.startswith("optimizer") else key
                walk(sub, f"{path}.{key}", value)

    with initialize_config_dir(config_dir=str(config_dir("train")), version_base="1.3"):
        for dataset, method, attack in overrides:
            cfg = compose(
                "train", overrides=[f"dataset={dataset}", f"method={method}", f"attack={attack}", "paths.output_dir=/x"]
            )
            for slot in ("model", "dataset", "method", "attack", "eval_attack"):
                walk(slot, slot, OmegaConf.to_container(cfg[slot], resolve=True))
    return list(blocks.values())


BLOCKS = genuine_blocks()
CASES = [
    (slot, path, block, key)
    for slot, path, block in BLOCKS
    for key, value in block.items()
    if key not in NOT_A_VALUE and not never_from_file(key) and not (isinstance(value, dict) and "_target_" in value)
]


def test_the_genuine_blocks_cover_every_slot():
    assert {slot for slot, *_ in BLOCKS} == {
        "model",
        "dataset",
        "method",
        "attack",
        "eval_attack",
        "optimizer",
        "scheduler",
        "discriminator",
    }
    assert len(CASES) > 60


@pytest.mark.parametrize(("slot", "path", "block", "key"), CASES, ids=[f"{c[1]}.{c[3]}" for c in CASES])
def test_every_wrong_json_type_is_refused_naming_the_key(slot, path, block, key):
    check_slot(block, slot, prefix=path)  # the genuine block passes
    wrong = [name for name in PROBES if name not in accepted(key, block[key])]
    assert wrong
    for name in wrong:
        crafted = copy.deepcopy(block)
        crafted[key] = PROBES[name]
        with pytest.raises(UnsafeConfigError) as info:
            check_slot(crafted, slot, prefix=path)
        assert f"{path}.{key}" in str(info.value), (name, str(info.value))


@pytest.mark.parametrize(
    ("slot", "node", "fragment"),
    [
        # An optimizer factory that is a string (the old checker passed annotations it could not read).
        (
            "method",
            {"_target_": "afd_lightning.methods.NaturalTraining", "optimizer": "torch.optim.SGD"},
            "method.optimizer",
        ),
        ("method", {"_target_": "afd_lightning.methods.NaturalTraining", "scheduler": 3}, "method.scheduler"),
        ("scheduler", {"_target_": "torch.optim.lr_scheduler.MultiStepLR", "milestones": "20"}, "scheduler.milestones"),
        ("scheduler", {"_target_": "torch.optim.lr_scheduler.CyclicLR", "mode": "square"}, "scheduler.mode"),
        ("optimizer", {"_target_": "torch.optim.Adam", "betas": [0.9]}, "optimizer.betas"),
        # An argument without an annotation and with a None default cannot be checked: refused.
        (
            "attack",
            {
                "_target_": "afd_lightning.attacks.AttackFactory",
                "attack_cls": "advertorch.attacks.PGDAttack",
                "l1_sparsity": 0.5,
            },
            "cannot be checked",
        ),
    ],
)
def test_values_the_old_checker_let_through_are_refused(slot, node, fragment):
    with pytest.raises(UnsafeConfigError, match=fragment.replace(".", r"\.")):
        check_slot(node, slot)
