"""Paths named in comments, docstrings, configs and docs exist: no page or comment points at a moved file.

Scanned: every file under src/, conf/, docs/ (generated results excluded), benchmarks/, tools/, and the README,
Makefile and pyproject.toml. Checked: repository paths (``conf/...``, ``src/...``, ``tests/...``, ``docs/...``,
``benchmarks/...``, ``tools/...``), package-relative file paths (``afd_lightning/run/rundir.py``,
``evaluation/checks/checker.py``) and dotted names (``afd_lightning.store.checkpoint.load_checkpoint``: the module
part must be a module or package of ours, and the rest an attribute of it).
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "afd_lightning"
SCANNED = [
    *sorted((REPO / "src").rglob("*.py")),
    *sorted((REPO / "conf").rglob("*.yaml")),
    *sorted(p for p in (REPO / "docs").rglob("*.md") if "results" not in p.relative_to(REPO / "docs").parts),
    *sorted((REPO / "benchmarks").glob("*.py")),
    *sorted((REPO / "tools").glob("*.py")),
    REPO / "README.md",
    REPO / "Makefile",
    REPO / "pyproject.toml",
]
# A repository path: a top-level folder of ours followed by a path; placeholders (<group>, {a,b}, *) are skipped.
REPO_PATH = re.compile(r"(?<![\w./-])((?:conf|src|tests|docs|benchmarks|tools)/[\w./-]*[\w/])")
PACKAGE_FILE = re.compile(r"(?<![\w./-])((?:afd_lightning/)?(?:[a-z_]+/)+[a-z_0-9]+\.py)\b")
DOTTED = re.compile(r"(?<![\w.])afd_lightning(?:\.[A-Za-z_]\w*)+")
OUR_FOLDERS = {p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("__")}
# Paths that a command creates or that name other projects' files (the authors' repository, a user's project).
NOT_OURS = re.compile(
    r"^(docs/results/|benchmarks/results/|conf/\.\.|tests/\.\."
    r"|conf/model/small_cnn\.yaml"  # the user's own project in docs/byon.md (--config-dir conf)
    r"|conf/train/local/default\.yaml)"  # untracked, machine-specific: Hydra's optional group
)


def _exists_in_repo(path: str) -> bool:
    path = path.rstrip("/.")
    return (REPO / path).exists() or any((REPO / path).parent.glob(Path(path).name + "*"))


def _dotted_ok(name: str) -> bool:
    parts = name.split(".")
    module = None
    for i in range(len(parts), 0, -1):
        candidate = ".".join(parts[:i])
        rel = Path(*parts[1:i])
        if i == 1 or (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel / "__init__.py").is_file():
            module, rest = candidate, parts[i:]
            break
    if module is None:
        return False
    if not rest:
        return True
    obj = importlib.import_module(module)
    for attr in rest:
        if not hasattr(obj, attr):
            return False
        obj = getattr(obj, attr)
    return True


def _problems(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    where = path.relative_to(REPO)
    found = []
    for match in REPO_PATH.finditer(text):
        value = match.group(1)
        if re.search(r"[<{*]", text[match.start() : match.end() + 1]) or NOT_OURS.match(value):
            continue
        if not _exists_in_repo(value):
            found.append(f"{where}: path {value} does not exist")
    for match in PACKAGE_FILE.finditer(text):
        value = match.group(1)
        first = value.removeprefix("afd_lightning/").split("/", 1)[0]
        if first not in OUR_FOLDERS or REPO_PATH.fullmatch(value):
            continue
        if not (PACKAGE / value.removeprefix("afd_lightning/")).is_file():
            found.append(f"{where}: file {value} does not exist in src/afd_lightning")
    for match in DOTTED.finditer(text):
        value = match.group(0).rstrip(".")
        if not _dotted_ok(value):
            found.append(f"{where}: {value} names no module or attribute of afd_lightning")
    return found


def test_every_path_and_module_named_in_the_text_exists():
    problems = [p for path in SCANNED for p in _problems(path)]
    assert not problems, f"{len(problems)} stale names:\n" + "\n".join(sorted(set(problems)))
