"""The typer application and the options every command shares (declared once, reused)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

app = typer.Typer(
    name="imgforge",
    help="Hardened, non-root nginx images for static sites, carried into a Kubernetes GitOps repo.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold tokens and passwords
    add_completion=False,
)

console = Console()
err_console = Console(stderr=True)

RootOpt = Annotated[
    Optional[Path],
    typer.Option("--root", envvar="IMGFORGE_ROOT", help="Catalog folder (holds imgforge.toml and sites/).",
                 show_default="current directory"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
SiteArg = Annotated[str, typer.Argument(help="Site name (a file in sites/, without .toml).")]
RepoOpt = Annotated[Path, typer.Option("--repo", help="Path to the GitOps repository work tree.")]


@app.callback()
def _root() -> None:
    """Hardened, non-root nginx images for static sites, carried into a Kubernetes GitOps repo.

    Add --debug to any command for a full traceback instead of the one-line error.
    """


def print_json(data: Any) -> None:
    """One JSON document on stdout, nothing else, so `--json` output pipes into jq."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()
