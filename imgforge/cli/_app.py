"""The typer application and the options every command shares (declared once, reused)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

app = typer.Typer(
    name="imgforge",
    help="Hardened, non-root nginx images for static sites, carried into a Kubernetes GitOps repo.\n\n"
    "Add --debug to any command for the full traceback instead of a one-line error. "
    "Exit codes: see the README.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold tokens and passwords
    add_completion=False,
)

console = Console()
err_console = Console(stderr=True)

RootOpt = Annotated[
    Path | None,
    typer.Option(
        "--root",
        envvar="IMGFORGE_ROOT",
        help="Catalog folder (holds imgforge.toml and sites/).",
        show_default="current directory",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
SiteArg = Annotated[str, typer.Argument(help="Site name (a file in sites/, without .toml).")]
RepoOpt = Annotated[Path, typer.Option("--repo", help="Path to the GitOps repository work tree.")]
TagOpt = Annotated[str | None, typer.Option("--tag", help="Image tag to deploy.", show_default="the catalog's tag")]
LevelOpt = Annotated[
    str, typer.Option("--level", help="securityContext level: minimal or restricted (see docs/gitops.md).")
]
PinDigestOpt = Annotated[
    bool | None,
    typer.Option(
        "--pin-digest/--no-pin-digest",
        help="Deploy tag@sha256:… (the registry's digest of the tag), so what was reviewed is what runs.",
        show_default="pin_digest in imgforge.toml, else off",
    ),
]
AllOpt = Annotated[bool, typer.Option("--all", help="Every site in the catalog.")]


@app.callback()
def _root() -> None:
    """Hardened, non-root nginx images for static sites, carried into a Kubernetes GitOps repo.

    Add --debug to any command for a full traceback instead of the one-line error.
    """


def print_json(data: Any) -> None:
    """One JSON document on stdout, nothing else, so `--json` output pipes into jq."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()
