"""The one way to read a file we did not write: run folders, results, exports, stored YAML and JSON.

Every reader of a file that may come from someone else (``afd-summarize`` over a folder of runs,
``afd-eval`` reading a run's ``.hydra/`` record, ``load_classifier`` reading an export's ``config.json``,
the docs tools reading committed records) goes through here:

* **regular files only**: the path is opened with ``O_NOFOLLOW | O_NONBLOCK`` and checked with ``fstat`` on
  the open descriptor, so a link, a FIFO, a device or a directory is refused before a byte is read, and
  the file checked is the file read;
* **a size cap before reading**: at most ``max_bytes`` are read (a file that grows past it is refused);
* **bounded structure**: JSON and YAML are parsed with a bound on nesting depth and on the number of
  nodes, checked by an iterative walk (never Python's recursion limit), and YAML without anchors or
  aliases (a safe loader that refuses them, so an alias bomb cannot expand).

A refusal is a :class:`UnreadableFileError` (an :class:`~afd_lightning.errors.AFDUserError`): one line naming
the file and what is wrong with it.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import Any

from afd_lightning.errors import AFDUserError

# Bounds for the small records we read (metrics, configs, results, export configs); callers may pass others.
MAX_BYTES = 20_000_000
MAX_DEPTH = 64
MAX_NODES = 1_000_000

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


class UnreadableFileError(AFDUserError):
    """A file we did not write is not something we read: not a regular file, too big, too deep, malformed."""


def _open_regular(path: Path, what: str) -> int:
    """A descriptor on the regular file ``path``, opened without following a link and checked with ``fstat``."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK)
    except OSError as err:
        if err.errno == errno.ELOOP or path.is_symlink():
            raise UnreadableFileError(f"{what} {path} is a symbolic link; only regular files are read") from err
        raise UnreadableFileError(f"{what} {path} cannot be read ({err.strerror or err})") from err
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnreadableFileError(f"{what} {path} is not a regular file (a folder, FIFO or device); it is not read")
    return fd


def read_bytes(path: str | Path, max_bytes: int = MAX_BYTES, what: str = "file") -> bytes:
    """The bytes of the regular file ``path`` (no link, FIFO, device or folder), at most ``max_bytes`` of them."""
    path = Path(path)
    fd = _open_regular(path, what)
    try:
        info = os.fstat(fd)
        if info.st_size > max_bytes:
            raise UnreadableFileError(f"{what} {path} is {info.st_size:,} bytes, more than the {max_bytes:,} allowed")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise UnreadableFileError(f"{what} {path} grew past the {max_bytes:,} bytes allowed while being read")
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_head(path: str | Path, n_bytes: int, what: str = "file") -> bytes:
    """The first ``n_bytes`` (or fewer) of the regular file ``path``: a magic number, a CSV header, a first line.

    The same door as :func:`read_bytes` (no link, FIFO, device or folder); the rest of the file is not read,
    so a large file costs nothing.
    """
    path = Path(path)
    fd = _open_regular(path, what)
    try:
        return os.read(fd, n_bytes)
    finally:
        os.close(fd)


def read_text(path: str | Path, max_bytes: int = MAX_BYTES, what: str = "file") -> str:
    """:func:`read_bytes` decoded as UTF-8 (a file that is not UTF-8 text is refused)."""
    try:
        return read_bytes(path, max_bytes, what).decode("utf-8")
    except UnicodeDecodeError as err:
        raise UnreadableFileError(f"{what} {path} is not UTF-8 text ({err.reason} at byte {err.start})") from err


def check_bounds(value: Any, where: str, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> Any:
    """``value`` if its nesting is at most ``max_depth`` and it has at most ``max_nodes`` nodes (iterative walk)."""
    stack = [(value, 0)]
    nodes = 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > max_nodes:
            raise UnreadableFileError(f"{where} holds more than {max_nodes:,} values; it is not one of ours")
        if depth > max_depth:
            raise UnreadableFileError(f"{where} is nested deeper than {max_depth} levels; it is not one of ours")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return value


def _nesting(text: str, max_depth: int, where: str) -> None:
    """Refuse JSON text nested deeper than ``max_depth`` before the parser recurses into it."""
    depth = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > max_depth:
                raise UnreadableFileError(f"{where} is nested deeper than {max_depth} levels; it is not one of ours")
        elif ch in "]}":
            depth -= 1


def parse_json(text: str, where: str, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> Any:
    """JSON ``text`` as plain data, bounded; NaN and infinities are refused (our files never hold them)."""
    _nesting(text, max_depth, where)

    def no_constants(name: str):
        raise ValueError(f"{name} is not a JSON number")

    try:
        value = json.loads(text, parse_constant=no_constants)
    except (ValueError, RecursionError) as err:
        raise UnreadableFileError(f"{where} is not valid JSON ({str(err).splitlines()[0][:200]})") from err
    return check_bounds(value, where, max_depth, max_nodes)


def read_json(
    path: str | Path,
    max_bytes: int = MAX_BYTES,
    what: str = "file",
    max_depth: int = MAX_DEPTH,
    max_nodes: int = MAX_NODES,
) -> Any:
    """A JSON file we did not write, as plain data: regular file, size cap, depth and node bounds."""
    return parse_json(read_text(path, max_bytes, what), f"{what} {path}", max_depth, max_nodes)


def _bounded_yaml_loader(where: str, max_depth: int, max_nodes: int):
    import yaml

    class Loader(yaml.SafeLoader):
        """PyYAML's safe loader (plain types only) without anchors or aliases, with depth and node bounds."""

        nodes = 0

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent) or getattr(self.peek_event(), "anchor", None):
                mark = self.peek_event().start_mark
                raise UnreadableFileError(
                    f"{where} uses a YAML anchor or alias (line {mark.line + 1}); files we read may not"
                )
            self.nodes += 1
            if self.nodes > max_nodes:
                raise UnreadableFileError(f"{where} holds more than {max_nodes:,} values; it is not one of ours")
            depth = getattr(self, "_depth", 0)
            if depth > max_depth:
                raise UnreadableFileError(f"{where} is nested deeper than {max_depth} levels; it is not one of ours")
            self._depth = depth + 1
            try:
                return super().compose_node(parent, index)
            finally:
                self._depth = depth

    return Loader


def parse_yaml(text: str, where: str, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> Any:
    """YAML ``text`` as plain data (no tags beyond the safe ones, no anchors or aliases), bounded."""
    import yaml

    loader = _bounded_yaml_loader(where, max_depth, max_nodes)(text)
    try:
        value = loader.get_single_data()
    except yaml.YAMLError as err:
        raise UnreadableFileError(f"{where} is not valid YAML ({str(err).splitlines()[0][:200]})") from err
    except RecursionError as err:
        raise UnreadableFileError(f"{where} is nested too deeply; it is not one of ours") from err
    finally:
        loader.dispose()
    return check_bounds(value, where, max_depth, max_nodes)


def read_yaml(
    path: str | Path,
    max_bytes: int = MAX_BYTES,
    what: str = "file",
    max_depth: int = MAX_DEPTH,
    max_nodes: int = MAX_NODES,
) -> Any:
    """A YAML file we did not write (a run's ``.hydra/config.yaml``), as plain data, bounded."""
    return parse_yaml(read_text(path, max_bytes, what), f"{what} {path}", max_depth, max_nodes)


def is_regular_file(path: str | Path) -> bool:
    """Whether ``path`` is a regular file and not a link (what the readers here accept), without opening it."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False
