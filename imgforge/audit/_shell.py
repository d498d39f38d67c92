"""Reading shell text the way the shell would, enough to know what each command writes.

Used for start-up scripts and shell-form ENTRYPOINT/CMD (what a container runs) and for a
Dockerfile's RUN lines (what the build leaves behind). Text is split with shlex (so quotes and
operators are the shell's), ``\\`` continuations are joined and here-document bodies skipped;
variables are expanded from what the text assigns and the environment given, and a value that
stays unknown stays written as ``$NAME``: nothing is guessed.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass

SHELLS = frozenset({"sh", "bash", "ash", "dash", "ksh", "zsh", "busybox"})
_EVERY_ARG = frozenset({"mkdir", "touch", "rm", "truncate", "tee", "rmdir", "mkfifo"})
_AFTER_FIRST = frozenset({"chmod", "chown", "chgrp"})
_LAST_ARG = frozenset({"cp", "mv", "ln", "install", "rsync"})
_WRAPPERS = frozenset({"exec", "command", "nohup", "time", "then", "else", "do", "if", "elif", "while", "until", "!"})
_SWITCH_USER = frozenset({"gosu", "su-exec"})  # `gosu USER cmd…`: the user word is not the command
_OPERATOR_CHARS = frozenset(";&|()")
_REDIRECTS = frozenset({">", ">>", ">|", "&>", "&>>"})
_NOT_WRITTEN = frozenset({"<", "<<", "<<-", "<<<", ">&", "<&", "<>"})
_ASSIGNMENT = re.compile(r"[A-Za-z_]\w*=")
_DECLARE = frozenset({"export", "local", "readonly", "declare"})


@dataclass(frozen=True)
class Command:
    line: int | None
    name: str  # the command's base name: ``envsubst`` for ``/usr/bin/envsubst``
    path: str  # the command word as written (expanded)
    args: tuple[str, ...]  # expanded
    writes: tuple[str, ...]  # paths it writes, expanded; may be relative or still hold a `$`


def expand(text: str, env: dict[str, str]) -> str:
    """Shell-style ``$VAR``, ``${VAR}``, ``${VAR:-default}``; unknown variables stay as written."""

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1) or m.group(3), m.group(2)
        if name in env:
            return env[name]
        return default if default is not None else m.group(0)

    return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}|\$(\w+)", sub, text)


def commands(text: str, first_line: int | None, env: dict[str, str]) -> Iterator[Command]:
    """The simple commands of ``text`` in order; plain assignments update ``env`` as the shell would.

    ``first_line`` is the number of the text's first line in its file (None: no line numbers).
    """
    heredoc: str | None = None
    for line, logical in _logical_lines(text, first_line):
        if heredoc is not None:  # a here-document's body is data, not commands
            if logical.strip() == heredoc:
                heredoc = None
            continue
        tokens = _tokens(logical)
        for raw_words, redirects in _segments(tokens):
            words = [expand(w, env) for w in raw_words]
            while words and words[0] in _DECLARE:
                words = words[1:]
            if words and all(_ASSIGNMENT.match(w) for w in words):  # `A=1 B=2`: shell variables
                for word in words:
                    key, _, value = word.partition("=")
                    env[key] = value
                words = []
            while words and (_ASSIGNMENT.match(words[0]) or words[0] in _WRAPPERS):
                words = words[1:]  # `A=1 cmd`: A is the command's only; `exec cmd`: cmd
            if words and os.path.basename(words[0]) in _SWITCH_USER:
                words = words[2:]
            if words and os.path.basename(words[0]) == "xargs":
                words = [w for w in words[1:] if not w.startswith("-")]
            if not words and not redirects:
                continue
            name = os.path.basename(words[0]) if words else ""
            args = tuple(words[1:])
            targets = [expand(r, env) for r in redirects]
            yield Command(line, name, words[0] if words else "", args, tuple(targets + _written(name, list(args))))
        heredoc = _heredoc(tokens)


def shell_text(argv: list[str]) -> str | None:
    """The script of ``sh -c SCRIPT …`` (any shell), else None."""
    if len(argv) > 2 and os.path.basename(argv[0]) in SHELLS and argv[1] == "-c":
        return argv[2]
    return None


def is_shell_script(data: bytes) -> bool:
    """A ``#!`` line naming a shell (``/bin/sh``, ``/usr/bin/env bash``, ``busybox sh``)."""
    first = data.split(b"\n", 1)[0]
    if not first.startswith(b"#!"):
        return False
    words = [os.path.basename(w) for w in first[2:].decode("utf-8", "replace").split()]
    if words[:1] == ["env"]:
        words = words[1:]
    return bool(words) and words[0] in SHELLS


def _logical_lines(text: str, first_line: int | None) -> Iterator[tuple[int | None, str]]:
    """Lines with ``\\`` continuations joined, each with the number of its first line."""
    start: int | None = None
    parts: list[str] = []
    for n, raw in enumerate(text.splitlines()):
        if not parts:
            start = None if first_line is None else first_line + n
        if raw.rstrip().endswith("\\"):
            parts.append(raw.rstrip()[:-1])
            continue
        parts.append(raw)
        yield start, " ".join(parts)
        parts = []
    if parts:
        yield start, " ".join(parts)


def _tokens(text: str) -> list[str]:
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|()<>")
    lexer.whitespace_split = True
    lexer.commenters = ""  # `${#x}` is not a comment; a word starting with `#` is (below)
    try:
        tokens = list(lexer)
    except ValueError:  # an unbalanced quote: fall back to plain words
        tokens = text.split()
    comment = next((i for i, t in enumerate(tokens) if t.startswith("#")), len(tokens))
    return tokens[:comment]


def _heredoc(tokens: list[str]) -> str | None:
    """The delimiter of a here-document the line opens (``cat <<EOF``), if any."""
    for i, token in enumerate(tokens[:-1]):
        if token in ("<<", "<<-"):
            return tokens[i + 1]
    return None


def _segments(tokens: list[str]) -> Iterator[tuple[list[str], list[str]]]:
    """(words, redirection targets) of each simple command."""
    words: list[str] = []
    redirects: list[str] = []
    skip_next = into_redirect = False
    for token in tokens:
        if skip_next or into_redirect:
            if into_redirect:
                redirects.append(token)
            skip_next = into_redirect = False
        elif token in _REDIRECTS or token in _NOT_WRITTEN:
            if token != "<" and words and words[-1].isdigit():  # `2>`: a descriptor number, not an argument
                words.pop()
            into_redirect = token in _REDIRECTS
            skip_next = not into_redirect  # an input file, a here-doc delimiter, a descriptor
        elif set(token) <= _OPERATOR_CHARS:
            yield words, redirects  # `;`, `&&`, `|`, `)`, `);` …: the command ends
            words, redirects = [], []
        else:
            words.append(token)
    yield words, redirects


def _written(name: str, args: list[str]) -> list[str]:
    operands = [a for a in args if not a.startswith("-")]
    if name in _EVERY_ARG:
        return operands
    if name in _AFTER_FIRST:
        return operands[1:]
    if name in _LAST_ARG:
        return operands[-1:] if len(operands) > 1 else []
    if name == "sed" and any(a.startswith(("-i", "--in-place")) for a in args):
        return operands[-1:]
    if name == "dd":
        return [a[3:] for a in args if a.startswith("of=")]
    if name in ("gomplate", "j2"):
        return flag_values(args, ("-o", "--out", "--output", "--output-dir"))
    if name == "dockerize":
        return [v.rpartition(":")[2] for v in flag_values(args, ("-template", "--template")) if ":" in v]
    return []


def flag_values(args: list[str], flags: tuple[str, ...]) -> list[str]:
    """Values of ``-o VALUE`` and ``--out=VALUE`` style options."""
    found = []
    for i, arg in enumerate(args):
        if arg in flags and i + 1 < len(args):
            found.append(args[i + 1])
        elif "=" in arg and arg.split("=", 1)[0] in flags:
            found.append(arg.split("=", 1)[1])
    return found
