"""Every study under docs/results/ with per-run records is rebuilt by afd-summarize from them, value for value."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from afd_lightning.summarize import cli

REPO = Path(__file__).resolve().parents[1]
STUDIES = sorted(p.parent.name for p in (REPO / "docs" / "results").glob("*/runs"))
SUMMARISED = sorted(p.parent.name for p in (REPO / "docs" / "results").glob("*/summary.json"))


def test_every_summary_has_its_records():
    """A summary.json without the runs behind it is a claim, not a result: none is committed."""
    assert SUMMARISED == STUDIES


@pytest.mark.parametrize("study", STUDIES)
@pytest.mark.slow
def test_summary_is_rebuilt_from_the_committed_records(study, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # summary.json records the root as the command was given, relative to the checkout
    root = Path("docs/results") / study / "runs"
    cli.run(root, out_dir=tmp_path)
    committed = json.loads((REPO / "docs/results" / study / "summary.json").read_text())
    rebuilt = json.loads((tmp_path / "summary.json").read_text())
    committed.pop("provenance"), rebuilt.pop("provenance")  # the summarizer's own process, not the runs'
    assert rebuilt == committed
    assert (tmp_path / "summary.md").read_text() == (REPO / "docs/results" / study / "summary.md").read_text()


CLAIMED = sorted(p.parent.name for p in (REPO / "docs" / "results").glob("*/claims.yaml"))


@pytest.mark.parametrize("study", CLAIMED)
@pytest.mark.slow
def test_claims_are_rebuilt_from_the_committed_records(study):
    import sys

    sys.path.insert(0, str(REPO / "tools"))
    import claims

    rebuilt = claims.build(REPO / "docs/results" / study)
    assert rebuilt == json.loads((REPO / "docs/results" / study / "claims.json").read_text())


@pytest.mark.slow
def test_a_number_quoted_only_in_prose_is_checked(tmp_path):
    """A committed number a page quotes in prose (a value region) is rendered from its JSON: one point more in the
    record gives another text, so the docs check (tests/test_docs.py) fails until the page is regenerated."""
    import sys

    sys.path.insert(0, str(REPO / "tools"))
    import docs_tables

    quoted = [
        m for doc in docs_tables.documents(REPO) if doc.is_file() for m in docs_tables.VALUE.finditer(doc.read_text())
    ]
    assert quoted, "no prose value region in the docs"
    for match in quoted:
        fields = dict((item.split("=", 1) + [""])[:2] for item in shlex.split(match["spec"]))  # count: a bare flag
        assert docs_tables.render_value(match["spec"], REPO, "docs") == match["body"]
        data = json.loads((REPO / fields["source"]).read_text())
        tokens = re.findall(r"[^.\[\]]+|\[[^\]]*\]", fields["path"])
        parent_path = fields["path"][: len(fields["path"]) - len(tokens[-1])].rstrip(".")
        parent = docs_tables.lookup(data, parent_path, "test") if parent_path else data
        last = int(tokens[-1][1:-1]) if tokens[-1].startswith("[") else tokens[-1]
        if "count" in fields:  # one more item in the counted list (one more seed)
            parent[last] = [*parent[last], parent[last][-1]]
        else:  # one more in the record
            parent[last] = parent[last] + (1 if isinstance(parent[last], int) else 1.0)
        (tmp_path / fields["source"]).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / fields["source"]).write_text(json.dumps(data))
        assert docs_tables.render_value(match["spec"], tmp_path, "docs") != match["body"], match["spec"]


def test_nt_fails_no_check_in_the_full_suite_over_five_seeds():
    """Issue 31.6: the committed full-suite evaluations of five NT seeds (100 images each) fail no check."""
    from afd_lightning.evaluation.report.schema import EvaluationResults

    found = sorted((REPO / "docs/results/nt_checks/records").glob("nt*/eval_full_*/results.json"))
    assert len(found) == 5
    seeds = set()
    for path in found:
        results = EvaluationResults.load(path)
        assert results.n_samples == 100 and results.complete
        (model,) = results.models.values()
        seeds.add(results.seed)
        assert len(model.checks) >= 10
        failed = [c.name for c in model.checks if c.passed is False]
        assert failed == [], f"{path}: {failed}"
    assert seeds == {0, 1, 2, 3, 4}
