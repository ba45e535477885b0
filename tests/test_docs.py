"""Docs that cannot drift: generated tables match their committed JSON, the config groups and options the
docs name exist, and every documented train.py / eval.py command composes (Hydra compose, no run).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser

from afd_lightning.config.paths import config_dir

from helpers.compose import REPO

sys.path.insert(0, str(REPO / "tools"))
import docs_tables  # noqa: E402

ENTRY_POINTS = {"train.py": "train", "afd-train": "train", "eval.py": "eval", "afd-eval": "eval"}
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)


def _docs() -> list[Path]:
    return [p for p in docs_tables.documents() if p.is_file()]


@pytest.mark.slow
def test_generated_tables_match_their_sources():
    assert docs_tables.stale() == [], "run `python tools/docs_tables.py --write` and commit the result"


def test_docs_have_generated_tables_for_results_and_configs():
    text = "\n".join(p.read_text() for p in _docs())
    for marker in (
        "table:config_groups source=conf/train ",
        "table:config_groups source=conf/eval ",
        "table:train_metrics",
    ):
        assert marker in text, f"no {marker!r} region in README.md or docs/"


# keys whose values the generated tables show: a train run's metric, a model's clean accuracy, a summary mean
SHOWN = ("test/acc_adv", "clean_accuracy", "mean")


def _bump_one_shown_number(node) -> bool:
    """Add 0.01 to the first number under a SHOWN key (depth first); True if one was found."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in SHOWN and isinstance(value, (int, float)) and not isinstance(value, bool):
                node[key] = value + 0.01
                return True
            if _bump_one_shown_number(value):
                return True
    if isinstance(node, list):
        return any(_bump_one_shown_number(v) for v in node)
    return False


@pytest.mark.slow
def test_changing_one_number_in_a_committed_json_makes_the_check_fail(tmp_path):
    for name in ("README.md", "docs", "conf", "benchmarks/results"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    assert docs_tables.stale(tmp_path) == []
    sources = sorted({m["source"] for p in _docs() for m in docs_tables.REGION.finditer(p.read_text())})
    json_sources = [s for s in sources if s.endswith(".json") and (tmp_path / s).is_file()]
    assert json_sources, "no generated table reads a committed JSON file"
    for source in json_sources:
        path = tmp_path / source
        original = path.read_text()
        data = json.loads(original)
        assert _bump_one_shown_number(data), f"{source}: no number the table shows"
        path.write_text(json.dumps(data))
        assert docs_tables.stale(tmp_path), f"changing one number in {source} went unnoticed"
        path.write_text(original)


def test_a_marker_without_its_end_or_with_an_unknown_name_is_refused():
    with pytest.raises(docs_tables.RegionError, match="without its"):
        docs_tables.render("<!-- table:presets source=conf/train/experiment -->\n| x |\n")
    with pytest.raises(docs_tables.RegionError, match="is not one of"):
        docs_tables.render("<!-- table:nope source=x -->\n<!-- /table -->")


def test_a_value_counts_a_list_and_refuses_to_count_a_number(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps({"rows": [{"method": "AT", "seeds": [0, 1, 2], "n": 3}]}))
    assert docs_tables.render_value("source=s.json path=rows[method=AT].seeds count", tmp_path, "t") == "3"
    with pytest.raises(docs_tables.RegionError, match="count needs a list, not int"):
        docs_tables.render_value("source=s.json path=rows[method=AT].n count", tmp_path, "t")


# ------------------------------------------------------------------ config groups and options named in the docs


def _groups(root: str) -> dict[str, set[str]]:
    base = config_dir(root)
    return {
        g.name: {str(f.relative_to(g).with_suffix("")) for f in g.rglob("*.yaml")}
        for g in base.iterdir()
        if g.is_dir() and not g.name.startswith("__")
    }


def test_every_group_option_the_docs_name_exists():
    train, evaluate = _groups("train"), _groups("eval")
    known = {g: train.get(g, set()) | evaluate.get(g, set()) for g in set(train) | set(evaluate)}
    known["attack@eval_attack"] = train["attack"]
    wrong = []
    for doc in _docs():
        text = doc.read_text()
        for code in re.findall(r"`([^`\n]+)`", text) + FENCE.findall(text):
            # group=option, not a keyword argument (followed by "(") nor a pattern (<data>, {a,b}, *)
            for hit in re.finditer(r"(?<![\w.+~/-])([a-z_@]+)=([\w/]+)(?![\w$.<{*(/])", code):
                group, option = hit.groups()
                in_call = code[: hit.start()].rstrip().endswith(("(", ","))  # a Python keyword argument
                user_file = f"{group}/{option}.yaml" in text  # a config the page itself writes (--config-dir)
                if group in known and option not in known[group] | {"null", "none"} and not (user_file or in_call):
                    wrong.append(f"{doc.relative_to(REPO)}: {group}={option}")
    assert not wrong, "the docs name config options that do not exist:\n" + "\n".join(sorted(set(wrong)))


# ------------------------------------------------------------------ documented commands compose


def documented_commands() -> list[tuple[str, str, list[str]]]:
    """``(where, root, overrides)`` for every fenced train.py/eval.py/afd-train/afd-eval command."""
    found = []
    for doc in _docs():
        for block in FENCE.findall(doc.read_text()):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split("  #", 1)[0].strip()
                if not line or line.startswith("#"):
                    continue
                words = shlex.split(line, comments=True)
                hit = next((i for i, w in enumerate(words) if Path(w).name in ENTRY_POINTS), None)
                if hit is None or "$" in line:
                    continue
                args = [w for w in words[hit + 1 :] if w not in ("-m", "--multirun")]
                if any(a.startswith("-") for a in args):  # --help, --cfg job ...: Hydra's own flags
                    continue
                found.append((f"{doc.relative_to(REPO)}: {line[:80]}", ENTRY_POINTS[Path(words[hit]).name], args))
    return found


def _first_of_each_sweep(overrides: list[str]) -> list[str]:
    """A multirun's overrides with each sweep (``seed=0,1,2``) replaced by its first value."""
    out = []
    for text, parsed in zip(overrides, OverridesParser.create().parse_overrides(overrides)):
        if parsed.is_sweep_override():
            value = next(iter(parsed.sweep_string_iterator()))
            out.append(f"{parsed.get_key_element()}={value}")
        else:
            out.append(text)
    return out


COMMANDS = documented_commands()


def test_the_docs_show_commands():
    assert len(COMMANDS) >= 5, [c[0] for c in COMMANDS]


@pytest.mark.parametrize(("where", "root", "overrides"), COMMANDS, ids=[c[0] for c in COMMANDS])
@pytest.mark.slow
def test_documented_command_composes(where, root, overrides):
    overrides = _first_of_each_sweep(overrides)
    with initialize_config_dir(config_dir=str(config_dir(root)), version_base="1.3"):
        cfg = compose(config_name=root, overrides=overrides)
    assert cfg is not None


def test_commands_that_produce_numbers_pin_threads():
    # threads=N, or OMP_NUM_THREADS=N before the command (threads=auto then takes that count)
    loose = [
        where
        for where, _, overrides in COMMANDS
        if not any(o.startswith("threads=") for o in overrides) and "OMP_NUM_THREADS=" not in where
    ]
    assert not loose, "documented commands without threads=N (another count gives other numbers):\n" + "\n".join(loose)
