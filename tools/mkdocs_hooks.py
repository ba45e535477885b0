"""mkdocs hook (mkdocs.yml ``hooks:``): the docstrings use Sphinx roles (:func:`x`, :class:`~x`), which
mkdocstrings prints literally; on the site they become plain code spans."""

from __future__ import annotations

import re

ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|attr|data|exc|obj):\s*(<code>)~?")


def on_page_content(html: str, **kwargs) -> str:
    return ROLE.sub(r"\1", html)
