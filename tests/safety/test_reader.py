"""The one reader of files we did not write (afd_lightning.files.reader): what each of its functions refuses."""

from __future__ import annotations

import json
import os
import time

import pytest

from afd_lightning.errors import AFDUserError
from afd_lightning.evaluation.report.schema import EvaluationResults
from afd_lightning.files.reader import (
    UnreadableFileError,
    read_bytes,
    read_head,
    read_json,
    read_text,
    read_yaml,
)

READERS = [read_bytes, read_text, read_json, read_yaml, lambda p, **kw: read_head(p, 16, **kw)]


@pytest.fixture
def hostile(tmp_path):
    """A folder with a link to /dev/zero, a FIFO, a folder and a link to a genuine file."""
    (tmp_path / "real.json").write_text('{"a": 1}')
    os.symlink("/dev/zero", tmp_path / "zero")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "folder").mkdir()
    os.symlink(tmp_path / "real.json", tmp_path / "alias.json")
    return tmp_path


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize(
    "name, why",
    [
        ("zero", "symbolic link"),
        ("alias.json", "symbolic link"),
        ("fifo", "not a regular file"),
        ("folder", "not a regular file"),
    ],
)
def test_only_regular_files_are_read(hostile, reader, name, why):
    start = time.monotonic()
    with pytest.raises(UnreadableFileError, match=why):
        reader(hostile / name, what="record")
    assert time.monotonic() - start < 2  # a FIFO with no writer does not block, /dev/zero is not read


def test_sizes_are_capped_before_reading_and_read_head_reads_only_the_head(tmp_path):
    big = tmp_path / "big.json"
    big.write_bytes(b"[" + b"0," * 600_000 + b"0]")
    with pytest.raises(UnreadableFileError, match="more than the 1,000 allowed"):
        read_json(big, max_bytes=1_000)
    assert read_head(big, 4) == b"[0,0"


@pytest.mark.parametrize("text", ["[" * 5000 + "]" * 5000, '{"a":' * 5000 + "1" + "}" * 5000])
def test_deep_json_is_one_error_not_a_recursion_error(tmp_path, text):
    (tmp_path / "deep.json").write_text(text)
    with pytest.raises(UnreadableFileError, match="nested deeper than 64 levels"):
        read_json(tmp_path / "deep.json")


def test_yaml_anchors_and_aliases_are_refused(tmp_path):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8)
    )
    (tmp_path / "bomb.yaml").write_text(bomb)
    start = time.monotonic()
    with pytest.raises(UnreadableFileError, match="anchor or alias"):
        read_yaml(tmp_path / "bomb.yaml")
    assert time.monotonic() - start < 1
    (tmp_path / "tag.yaml").write_text("a: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(UnreadableFileError, match="not valid YAML"):
        read_yaml(tmp_path / "tag.yaml")
    assert not (tmp_path / "pwned").exists()


def test_json_constants_and_non_utf8_are_refused(tmp_path):
    (tmp_path / "nan.json").write_text('{"a": NaN}')
    with pytest.raises(UnreadableFileError, match="not valid JSON"):
        read_json(tmp_path / "nan.json")
    (tmp_path / "latin.json").write_bytes(b'{"a": "\xe9"}')
    with pytest.raises(UnreadableFileError, match="not UTF-8"):
        read_json(tmp_path / "latin.json")


def test_evaluation_results_load_goes_through_the_reader(tmp_path):
    os.symlink("/dev/zero", tmp_path / "results.json")
    with pytest.raises(UnreadableFileError, match="symbolic link"):
        EvaluationResults.load(tmp_path / "results.json")
    (tmp_path / "list.json").write_text(json.dumps([1, 2]))
    with pytest.raises(AFDUserError, match="not a JSON object"):
        EvaluationResults.load(tmp_path / "list.json")
