"""Command-line entry point: parses flags, calls the library, prints. Nothing else lives here.

Errors are reported from exactly one place (``main``): one ``error: ...`` line on stderr and the
error's exit code. ``--debug`` (or ``IMGFORGE_DEBUG=1``) re-raises for the full traceback.
"""

from __future__ import annotations

import os
import sys

import typer
from typer.exceptions import TyperException

from imgforge.cli._app import app, err_console
from imgforge.errors import EXIT_INTERRUPTED, ImgforgeError

# Each module registers its commands on ``app`` when imported.
from imgforge.cli import core  # noqa: E402,F401

for _optional in ("verify", "release", "gitops", "pr", "ci", "audit", "keys"):
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
            raise
        err_console.print(f"error: {e}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("interrupted", markup=False)
        sys.exit(EXIT_INTERRUPTED)
    except TyperException as e:  # typer's (vendored click) usage errors: show() prints usage + message
        e.show()
        sys.exit(getattr(e, "exit_code", 2))
    if rc == EXIT_INTERRUPTED:  # typer turns Ctrl-C inside a command into a returned 130
        err_console.print("interrupted", markup=False)
    sys.exit(rc if isinstance(rc, int) else 0)
