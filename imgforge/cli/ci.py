"""``imgforge matrix``: the sites CI builds, as JSON, a GitHub Actions matrix or a GitLab child pipeline."""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from typing import Annotated

import typer

from imgforge.cli._app import RootOpt, app, err_console


class MatrixFormat(StrEnum):
    json = "json"
    github = "github"
    gitlab = "gitlab"


@app.command("matrix")
def matrix_cmd(
    changed_since: Annotated[
        str | None,
        typer.Option(
            "--changed-since",
            metavar="REF",
            help="Only sites whose inputs changed since this git revision (merge base with HEAD).",
        ),
    ] = None,
    fmt: Annotated[
        MatrixFormat,
        typer.Option(
            "--format", help="json (for people and jq), github (strategy.matrix), gitlab (child pipeline YAML)."
        ),
    ] = MatrixFormat.json,
    root: RootOpt = None,
) -> None:
    """List the sites CI must build; sites that cannot be built are reported, never dropped."""
    from imgforge import config, matrix

    catalog = config.load_catalog(root)
    result = matrix.sites_to_build(catalog, changed_since, catalog.root)
    if fmt is MatrixFormat.github:
        text = matrix.format_github(result, os.environ.get("GITHUB_OUTPUT") or None)
    elif fmt is MatrixFormat.gitlab:
        text = matrix.format_gitlab(result)
    else:
        text = matrix.format_json(result)
    sys.stdout.write(text)
    sys.stdout.flush()
    for p in result.problems:  # stderr, so stdout stays one document that CI can consume as is
        level = "error" if p.blocking else "warning"
        err_console.print(f"{level}: {p.site}: {p.reason}", markup=False, highlight=False, soft_wrap=True)
