"""`imgforge test`: run a built image as Kubernetes "restricted" would and show each check."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from imgforge.cli._app import JsonOpt, RootOpt, app, console, err_console, lazy, print_json
from imgforge.errors import UsageError

config = lazy("imgforge.config")

ImageOpt = Annotated[str | None, typer.Option("--image", help="Image to test instead of the catalog's image:tag.")]


@app.command("test")
def test_cmd(
    site: Annotated[str | None, typer.Argument(help="Site name (or --all).")] = None,
    all_sites: Annotated[
        bool, typer.Option("--all", help="Test every site whose catalog image exists, at once.")
    ] = False,
    image: ImageOpt = None,
    root: RootOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Start the image read-only, non-root, without capabilities, and check how it serves.

    Exit status 1 when any check fails; the result is recorded for release and push.
    """
    from imgforge import verify  # testcontainers is imported only by the commands that run containers

    if bool(site) == all_sites:
        raise UsageError("name one site or pass --all")
    if all_sites and image:
        raise UsageError("--image tests one site's image: name the site instead of --all")
    catalog = config.load_catalog(root)
    with err_console.status("starting test containers", spinner="dots"):
        if all_sites:
            reports = verify.run_sites(catalog, _testable(catalog))
        else:
            reports = [verify.run_site(catalog, catalog.site(site), image=image)]
    if json_out:
        print_json(reports[0].to_dict() if not all_sites else [r.to_dict() for r in reports])
    else:
        for report in reports:
            _show(report)
    if not all(r.ok for r in reports):
        raise typer.Exit(1)


def _testable(catalog: config.Catalog) -> list[config.Site]:
    """Sites with content whose catalog image was built (others have nothing to test yet)."""
    from imgforge import content
    from imgforge.engine import docker_client

    names = {tag for image in docker_client().images.list() for tag in image.tags}
    sites = [
        s for s in catalog.sites.values() if content.unavailable_reason(catalog, s) is None and s.reference in names
    ]
    if not sites:
        raise UsageError("no site has a built image: run `imgforge build --all` first")
    return sites


def _show(report) -> None:
    title = Text(f"{report.site}: {report.image} ({report.image_id[:19]})")
    table = Table("check", "result", "detail", title=title, title_justify="left")
    for check in report.checks:
        table.add_row(
            check.name, "[green]pass[/]" if check.ok else "[bold red]FAIL[/]", Text(check.detail)
        )  # details quote "[emerg]": not markup
    console.print(table)
    failed = len(report.failed)
    console.print(
        f"[green]all {len(report.checks)} checks passed[/]"
        if not failed
        else f"[red]{failed} of {len(report.checks)} checks failed[/]"
    )
