"""docs/library.md runs as written: its python blocks, in order, in one namespace (those marked not run aside)."""

from __future__ import annotations

import re

import pytest

from helpers.compose import REPO

PAGE = REPO / "docs" / "library.md"
BLOCK = re.compile(r"(<!-- not run -->\n)?```python\n(.*?)```", re.S)


def blocks() -> list[tuple[bool, str]]:
    """(runs, code) of each python block of the page."""
    return [(not skip, code) for skip, code in BLOCK.findall(PAGE.read_text())]


def test_the_page_has_run_and_shown_blocks():
    found = blocks()
    assert sum(runs for runs, _ in found) >= 3
    shown = [code for runs, code in found if not runs]
    assert shown and "ddp_find_unused_parameters_true" in shown[0] and "bf16-mixed" in shown[0]


@pytest.mark.slow
def test_the_library_page_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # whatever the code writes lands here (it is written to write nothing)
    namespace: dict = {"__name__": "__main__"}
    for runs, code in blocks():
        if runs:
            exec(compile(code, str(PAGE), "exec"), namespace)  # noqa: S102 -- the page's own code, as written
    printed = capsys.readouterr().out
    assert re.search(r"test/acc_clean \d\.\d{3}, test/acc_adv \d\.\d{3}", printed), printed
    assert "AFD DigitsDataModule 1" in printed
    assert re.search(r"clean \d\.\d\d, PGD-L∞ at ε 0\.2 \d\.\d\d", printed), printed
    results = namespace["results"]
    assert results.dataset == "digits" and results.n_samples == 20 and set(results.models) == {"AFD"}
    assert {"pgd_linf", "fgsm", "apgd_ce", "square"} <= set(results.models["AFD"].attacks)
    assert namespace["recipe"].module.trainer is not None  # the recipe's module was fitted by its trainer
    assert list(tmp_path.iterdir()) == []
