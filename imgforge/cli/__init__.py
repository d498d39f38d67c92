"""Command-line entry point: parses flags, calls the library, prints. Nothing else lives here.

Errors are reported from exactly one place (``main``): one ``error: ...`` line on stderr and the
error's exit code. ``--debug`` (or ``IMGFORGE_DEBUG=1``) prints the full traceback before that line
and keeps the exit code, so scripts and CI see the same status with or without it.
"""

from __future__ import annotations

import os
import sys
import traceback

import typer
from typer.exceptions import TyperException

# Each module registers its commands on ``app`` when imported.
from imgforge.cli import core  # noqa: F401
from imgforge.cli._app import app, err_console
from imgforge.errors import EXIT_INTERRUPTED, EXIT_USAGE, ImgforgeError

for _optional in ("verify", "release", "gitops", "pr", "ci", "audit", "adopt", "keys", "proof"):
    try:
        __import__(f"imgforge.cli.{_optional}")
    except ModuleNotFoundError as _e:  # a command group not written yet must not break the others
        if _e.name != f"imgforge.cli.{_optional}":
            raise

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("IMGFORGE_DEBUG") == "1"
    if "--debug" in args:
        args.remove("--debug")
        debug = True
    try:
        rc = app(args=args, prog_name="imgforge", standalone_mode=False)
    except ImgforgeError as e:
        if debug:
            traceback.print_exc()
        # One line, exactly as written: no rich markup or :emoji: codes, control characters escaped.
        sys.stderr.write(f"error: {_one_line(str(e))}\n")
        sys.stderr.flush()
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("interrupted", markup=False)
        sys.exit(EXIT_INTERRUPTED)
    except TyperException as e:  # typer's (vendored click) usage errors: show() prints usage + message
        show = getattr(e, "show", None)
        if callable(show):
            show()
        else:  # a typer error without its own rendering: still one line, still exit 2
            sys.stderr.write(f"error: {_one_line(str(e))}\n")
        sys.exit(getattr(e, "exit_code", EXIT_USAGE))
    if rc == EXIT_INTERRUPTED:  # typer turns Ctrl-C inside a command into a returned 130
        err_console.print("interrupted", markup=False)
    sys.exit(rc if isinstance(rc, int) else 0)


def _one_line(message: str) -> str:
    """``message`` with line breaks and other control characters escaped (a path may hold them)."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in message)
