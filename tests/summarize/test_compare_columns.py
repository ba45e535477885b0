"""Two attacks on the same runs (afd_lightning.summarize.compare.compare_columns): the paired statistics."""

from __future__ import annotations

from pathlib import Path

import pytest

from afd_lightning.evaluation import stats
from afd_lightning.summarize.compare import CompareError, Selector, compare_columns
from afd_lightning.summarize.discovery import Run


def _run(seed, pgd, apgd, method="afd"):
    per_image = {
        "pgd_linf": {i: i < pgd for i in range(100)},
        "pgd_margin": {i: i < apgd for i in range(100)},
    }
    return Run(
        Path(f"r{seed}"),
        "paper_digits_afd",
        method,
        "digits",
        "digits",
        "RN5",
        seed,
        values={"pgd_linf": float(pgd), "pgd_margin": float(apgd)},
        per_image=per_image,
    )


def test_columns_of_the_same_runs_are_compared_pair_by_pair():
    runs = [_run(0, 70, 60), _run(1, 68, 57), _run(2, 72, 63), _run(3, 90, 10, method="at")]
    c = compare_columns(runs, Selector.parse("method=afd"), "pgd_margin", "pgd_linf")
    assert (c.n, c.seeds, c.label_a, c.label_b) == (3, [0, 1, 2], "PGD-margin", "PGD-L∞ (WB)")
    assert c.difference == pytest.approx(-10.0) and c.mean_a == pytest.approx(60.0)
    assert c.paired_t == stats.paired_t_test([60, 57, 63], [70, 68, 72])
    # per image: PGD-margin robust on i < apgd, PGD-L∞ on i < pgd, so only PGD-L∞'s survivors are discordant
    assert (c.mcnemar.only_a, c.mcnemar.only_b, c.mcnemar.pairs) == (0, 30, 300)
    assert c.ci95 is not None and c.ci95[0] <= -10.0 <= c.ci95[1]


def test_unknown_columns_and_empty_groups_are_one_line():
    runs = [_run(0, 70, 60)]
    with pytest.raises(CompareError, match="'pgd_nothing' is not a summary column"):
        compare_columns(runs, Selector.parse("method=afd"), "pgd_nothing", "pgd_linf")
    with pytest.raises(CompareError, match="no run of 'method=at' has both"):
        compare_columns(runs, Selector.parse("method=at"), "pgd_margin", "pgd_linf")
