"""Minimal-diff YAML edits: ruamel.yaml finds the nodes, the text is changed in place.

A full ruamel round-trip dump re-emits the whole file: comments trailing a block end up attached
to its last node, so keys appended to that block land *below* the comment, and a reviewer sees
moved lines that nobody changed. Instead we parse with ruamel's round-trip loader (which records
the line and column of every key, value and sequence item) and splice text: a scalar is replaced
inside its line, keeping its quotes and any trailing comment (a Flux ``$imagepolicy`` marker);
new keys and sequence items are rendered by ruamel with the file's own indentation and inserted
after the last content line of their block. Every byte we were not asked to change stays put, so
the diff is exactly the lines that change.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from imgforge.errors import GitopsError


class MalformedYaml(GitopsError):
    def __init__(self, rel: str, detail: str):
        super().__init__(f"{rel}: malformed YAML: {detail}")


class UneditableYaml(GitopsError):
    """The change is well defined but cannot be written without reformatting the user's file."""


@dataclass
class Keyed:
    """A desired list merged like Kubernetes does: items matched on ``key`` (containers by name)."""

    key: str
    items: list[dict[str, Any]]


@dataclass
class YamlFile:
    path: Path
    rel: str
    text: str
    docs: list[Any]
    seq_offset: int = 2  # columns from a parent key to the "-" of its block sequence

    @cached_property
    def lines(self) -> list[str]:
        return self.text.splitlines(keepends=True)


# A parent key line (not a comment) and, past any comment or blank lines, its first "- " item:
# how far the file indents its block sequences. A commented-out item or key is not the evidence.
_INDENTED_SEQ = re.compile(r"^( *)[^#\s][^#\n]*:[ \t]*(?:#.*)?\n(?:[ \t]*(?:#.*)?\n)*( *)- ", re.M)


def parse(path: Path, rel: str, text: str | None = None) -> YamlFile:
    """Parse every document of a file, turning ruamel's errors into one line naming the file."""
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise GitopsError(f"{rel}: cannot read: {e}") from e
    try:
        docs = list(YAML(typ="rt").load_all(text))
    except YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise MalformedYaml(rel, f"{where}{getattr(e, 'problem', None) or e}") from e
    m = _INDENTED_SEQ.search(text)
    offset = len(m.group(2)) - len(m.group(1)) if m else 2
    return YamlFile(path, rel, text, docs, seq_offset=offset if offset in (0, 2, 4) else 2)


def _is_flow(node: Any) -> bool:
    return isinstance(node, (CommentedMap, CommentedSeq)) and bool(node.fa.flow_style())


def _needs_quotes(text: str) -> bool:
    try:
        return not isinstance(YAML(typ="safe").load(text), str)
    except YAMLError:
        return True


def format_scalar(value: Any, quote: str = "") -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    text = str(value)
    if quote == "'":
        return "'" + text.replace("'", "''") + "'"
    if quote == '"' or _needs_quotes(text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def _scalar_end(line: str, col: int) -> int:
    """Index just past the scalar token starting at ``col`` (quoted or plain, flow-safe)."""
    quote = line[col] if col < len(line) else ""
    if quote == "'":
        i = col + 1
        while i < len(line):
            if line[i] == "'":
                if line[i + 1 : i + 2] == "'":
                    i += 2
                    continue
                return i + 1
            i += 1
        return len(line.rstrip("\n"))
    if quote == '"':
        i = col + 1
        while i < len(line):
            if line[i] == "\\":
                i += 2
                continue
            if line[i] == '"':
                return i + 1
            i += 1
        return len(line.rstrip("\n"))
    end = len(line.rstrip("\r\n"))
    for stop in (" #", ",", "}", "]"):
        j = line.find(stop, col)
        if j != -1:
            end = min(end, j)
    return len(line[:end].rstrip())


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _is_filler(line: str) -> bool:
    s = line.strip()
    return not s or s.startswith("#")


@dataclass
class Editor:
    """Collects edits against one file's original text and applies them in one pass."""

    file: YamlFile
    _chars: dict[int, list[tuple[int, int, str]]] = field(default_factory=dict)
    _blocks: list[tuple[int, int, int, list[str]]] = field(default_factory=list)
    _seq: int = 0

    # -- primitive edits -------------------------------------------------------------------
    def set_scalar(self, parent: CommentedMap | CommentedSeq, key: Any, value: Any) -> None:
        """Replace one scalar value in its line; quotes and trailing comments survive."""
        line_no, col = parent.lc.item(key) if isinstance(parent, CommentedSeq) else parent.lc.value(key)
        line = self.file.lines[line_no]
        if col >= len(line) or line[col] in "|>&*!\n":
            raise UneditableYaml(
                f"{self.file.rel}:{line_no + 1}: cannot edit this value in place (block scalar, anchor or tag)"
            )
        end = _scalar_end(line, col)
        quote = line[col] if line[col] in "'\"" else ""
        self._chars.setdefault(line_no, []).append((col, end, format_scalar(value, quote)))

    def _insert(self, after_line: int, lines: list[str]) -> None:
        self._seq += 1
        self._blocks.append((after_line + 1, after_line + 1, self._seq, lines))

    def _replace_lines(self, start: int, end: int, lines: list[str]) -> None:
        self._seq += 1
        self._blocks.append((start, end, self._seq, lines))

    # -- structure -----------------------------------------------------------------------
    def _block_end(self, start_line: int, col: int, allow_dash_at_col: bool) -> int:
        """Last content line of a block whose own keys (or dashes) sit at column ``col``."""
        lines = self.file.lines
        last = start_line
        for i in range(start_line + 1, len(lines)):
            line = lines[i]
            if _is_filler(line):
                continue
            ind = _indent(line)
            if ind > col or (
                allow_dash_at_col and ind == col and line.lstrip(" ").startswith("-") and not line.startswith("---")
            ):
                last = i
                continue
            break
        return last

    def _render(self, data: Any, col: int) -> list[str]:
        y = YAML(typ="rt")
        y.width = 4096
        y.indent(mapping=2, sequence=self.file.seq_offset + 2, offset=self.file.seq_offset)
        buf = io.StringIO()
        y.dump(data, buf)
        raw = buf.getvalue().splitlines()
        strip = min((_indent(r) for r in raw if r.strip()), default=0)
        return [(" " * col + r[strip:]).rstrip() + "\n" for r in raw]

    def insert_keys(self, mapping: CommentedMap, items: dict[str, Any]) -> None:
        """Append new keys at the end of a block mapping (after its last content line)."""
        if not items:
            return
        if _is_flow(mapping) or not len(mapping):
            raise UneditableYaml(
                f"{self.file.rel}:{mapping.lc.line + 1}: cannot add keys to a flow-style "
                "or empty mapping without reformatting it"
            )
        last_key = list(mapping)[-1]
        key_line, col = mapping.lc.key(last_key)
        end = self._block_end(key_line, col, allow_dash_at_col=self.file.seq_offset == 0)
        self._insert(end, self._render(_plain(items), col))

    def append_item(self, seq: CommentedSeq, item: Any) -> None:
        if _is_flow(seq) or not len(seq):
            raise UneditableYaml(
                f"{self.file.rel}:{seq.lc.line + 1}: cannot add to a flow-style or "
                "empty sequence without reformatting it"
            )
        dash_col = seq.lc.col
        line_no = seq.lc.item(len(seq) - 1)[0]
        end = self._block_end(line_no, dash_col, allow_dash_at_col=False)
        rendered = self._render([_plain(item)], dash_col)
        self._insert(end, rendered)

    def replace_value(self, mapping: CommentedMap, key: str, value: Any) -> None:
        """Rewrite ``key: <anything>`` as ``key: <value>`` (used for flow/empty values we must change).

        Whole comment lines inside the old value (a commented-out list item, often at column 0)
        are kept, in order, right after the new value: they are the author's, not ours to drop.
        """
        key_line, col = mapping.lc.key(key)
        child = mapping[key]
        end = key_line
        if isinstance(child, (CommentedMap, CommentedSeq)) and not _is_flow(child):
            end = self._block_end(key_line, col, allow_dash_at_col=True)
        elif isinstance(child, (CommentedMap, CommentedSeq)) and child.lc.line != key_line:
            raise UneditableYaml(f"{self.file.rel}:{key_line + 1}: multi-line flow value; edit it by hand")
        comments = [line for line in self.file.lines[key_line + 1 : end + 1] if line.lstrip().startswith("#")]
        self._replace_lines(key_line, end + 1, self._render({key: _plain(value)}, col) + comments)

    def merge(self, node: CommentedMap, desired: dict[str, Any]) -> None:
        """Make ``node`` carry ``desired`` (strategic-merge style), adding or changing only what differs."""
        new: dict[str, Any] = {}
        for key, want in desired.items():
            if key not in node:
                new[key] = _plain(want.items if isinstance(want, Keyed) else want)
                continue
            have = node[key]
            if isinstance(want, Keyed):
                if isinstance(have, CommentedSeq) and not _is_flow(have):
                    self.merge_keyed(have, want)
                else:
                    self.replace_value(node, key, _merge_plain(have, want))
            elif isinstance(want, dict):
                if isinstance(have, CommentedMap) and not _is_flow(have) and len(have):
                    self.merge(have, want)
                else:
                    self.replace_value(node, key, _merge_plain(have, want))
            elif isinstance(want, list):
                if _plain(have) != want:
                    self.replace_value(node, key, want)
            elif have != want or type(have) is not type(want):
                if isinstance(have, (CommentedMap, CommentedSeq)) or have is None:
                    self.replace_value(node, key, want)
                else:
                    self.set_scalar(node, key, want)
        self.insert_keys(node, new)

    def merge_keyed(self, seq: CommentedSeq, want: Keyed) -> None:
        for item in want.items:
            match = next((x for x in seq if isinstance(x, CommentedMap) and x.get(want.key) == item[want.key]), None)
            if match is None:
                self.append_item(seq, item)
            else:
                self.merge(match, {k: v for k, v in item.items() if k != want.key})

    # -- result ----------------------------------------------------------------------------
    @property
    def changed(self) -> bool:
        return bool(self._chars or self._blocks)

    def result(self) -> str:
        lines = list(self.file.lines)
        for line_no, edits in self._chars.items():
            line = lines[line_no]
            for start, end, text in sorted(edits, reverse=True):
                line = line[:start] + text + line[end:]
            lines[line_no] = line
        touched = set(self._chars)
        for start, end, _, new in sorted(self._blocks, key=lambda b: (b[0], b[2]), reverse=True):
            if touched & set(range(start, end)):
                raise UneditableYaml(f"{self.file.rel}:{start + 1}: overlapping edits; edit it by hand")
            if start > len(lines) or (start == len(lines) and lines and not lines[-1].endswith("\n")):
                lines[-1] = lines[-1] + "\n" if lines else ""
            lines[start:end] = new
        return "".join(lines)


def _plain(value: Any) -> Any:
    """ruamel nodes and Keyed lists as plain dicts/lists (for rendering and comparison)."""
    if isinstance(value, Keyed):
        return [_plain(i) for i in value.items]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        return str(value)
    return value


def _merge_plain(have: Any, want: Any) -> Any:
    """What ``have`` becomes after merging ``want`` (for values we rewrite as a whole)."""
    if isinstance(want, Keyed):
        out = [_plain(x) for x in (have if isinstance(have, list) else [])]
        for item in want.items:
            match = next((x for x in out if isinstance(x, dict) and x.get(want.key) == item[want.key]), None)
            if match is None:
                out.append(_plain(item))
            else:
                match.update(_merge_plain(match, {k: v for k, v in item.items() if k != want.key}))
        return out
    if isinstance(want, dict):
        merged: dict[Any, Any] = dict(_plain(have)) if isinstance(have, dict) else {}
        for k, v in want.items():
            merged[k] = _merge_plain(merged.get(k), v)
        return merged
    return _plain(want)


def new_file_text(data: dict[str, Any], seq_offset: int = 2, explicit_start: bool = False) -> str:
    """Text of a file imgforge creates, in the repo's style (indented sequences, final newline)."""
    editor = Editor(YamlFile(Path("new.yaml"), "new.yaml", "", [], seq_offset))
    return ("---\n" if explicit_start else "") + "".join(editor._render(data, 0))
