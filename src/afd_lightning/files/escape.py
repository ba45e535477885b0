"""Strings from files are data wherever they land: escaped for markdown and HTML, dumped for YAML, capped.

A name, label, recipe or command read from a checkpoint, a run folder or a results file may hold
newlines, ``---``, ``|``, backticks or HTML. Everything we render into a markdown page, a table cell,
an HTML page or YAML front matter goes through one of these functions:

* :func:`one_line`: control characters and newlines become spaces, the length is capped;
* :func:`md_text` / :func:`md_cell`: :func:`one_line`, then the characters markdown or HTML would act on
  are escaped (a cell also escapes ``|``), so the text shows as written and adds no structure;
* :func:`code_span`: a string shown as inline code, with a fence longer than any backtick run inside;
* :func:`yaml_front_matter`: front matter written by a YAML dumper, never by string formatting.
"""

from __future__ import annotations

import html
import re
from typing import Any

MAX_SHOWN = 300  # characters of a string from a file shown in a report
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_MARKDOWN = re.compile(r"([\\`*\[\]|])")  # what can start code, emphasis, a link or a new cell


def one_line(value: Any, cap: int = MAX_SHOWN) -> str:
    """``str(value)`` on one line (control characters and newlines become one space), at most ``cap`` characters."""
    text = _CONTROL.sub(" ", str(value)).strip()
    return text if len(text) <= cap else text[: cap - 1] + "…"


def md_text(value: Any, cap: int = MAX_SHOWN) -> str:
    """A string from a file as plain markdown text: one line, HTML escaped, markdown punctuation escaped."""
    text = html.escape(one_line(value, cap), quote=False)
    return _MARKDOWN.sub(r"\\\1", text)


class Markdown(str):
    """Markdown we wrote ourselves (a code span, bold): a table cell shows it as it is, not escaped."""


def md_cell(value: Any, cap: int = MAX_SHOWN) -> str:
    """A table cell: numbers as they are, :class:`Markdown` as it is, other strings as :func:`md_text`."""
    if isinstance(value, Markdown):
        return str(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return md_text(value, cap)


def code_span(value: Any, cap: int = MAX_SHOWN) -> str:
    """A string from a file as inline code: one line, fenced by more backticks than it holds in a row."""
    text = one_line(value, cap)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def yaml_front_matter(data: dict[str, Any]) -> str:
    """``---`` + ``data`` dumped by PyYAML's safe dumper + ``---``: values from files cannot add keys."""
    import yaml

    return "---\n" + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=10_000) + "---\n"
