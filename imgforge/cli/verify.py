"""`imgforge test`: run a built image as Kubernetes "restricted" would and show each check."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from imgforge.cli._app import JsonOpt, RootOpt, app, console, err_console, print_json
from imgforge.errors import UsageError

if TYPE_CHECKING:
    from imgforge.config import Catalog, Site
    from imgforge.verify import VerifyReport

ImageOpt = Annotated[
    str | None,
    typer.Option("--image", help="Image to test (a tag or an id); without SITE no catalog is read at all."),
]


@app.command("test")
def verify_cmd(  # not test_*: pytest's naming rules would take it for a test
    site: Annotated[str | None, typer.Argument(help="Site name (or --image alone, or --all).")] = None,
    all_sites: Annotated[
        bool, typer.Option("--all", help="Test every site whose catalog image exists, at once.")
    ] = False,
    image: ImageOpt = None,
    root: RootOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Start the image read-only, non-root, without capabilities, and check how it serves.

    What the image must serve is read from the content manifest its build wrote into it, so
    `--image REF` alone needs no catalog and no content. Exit status 1 when any check fails;
    the result is recorded for release and push.
    """
    from imgforge import verify  # testcontainers is imported only by the commands that run containers

    if all_sites and (site or image):
        raise UsageError("--all tests every site's catalog image: leave out the site and --image")
    if not (all_sites or site or image):
        raise UsageError("name a site, pass --image REF, or --all")
    with err_console.status("starting test containers", spinner="dots"):
        if site is None and image is not None:
            reports = [verify.run_image(image)]
        else:
            from imgforge import config

            catalog = config.load_catalog(root)
            if all_sites:
                _load_oci_builds(catalog)
                reports = verify.run_sites(catalog, _testable(catalog))
            else:
                assert site is not None
                chosen = catalog.site(site)
                if chosen.builder == "oci" and image is None:
                    from imgforge.release_oci import load_for_test  # the layout goes into the engine first

                    image = load_for_test(chosen)
                reports = [verify.run_site(catalog, chosen, image=image)]
    if json_out:
        print_json(reports[0].to_dict() if not all_sites else [r.to_dict() for r in reports])
    else:
        for report in reports:
            _show(report)
    if not all(r.ok for r in reports):
        raise typer.Exit(1)


def _load_oci_builds(catalog: Catalog) -> None:
    """Load every oci site's cached build into the engine (nginx -t included); unbuilt ones are skipped."""
    from imgforge.errors import NotFound
    from imgforge.release_oci import load_for_test

    for site in catalog.sites.values():
        if site.builder == "oci":
            try:
                load_for_test(site)
            except NotFound:
                continue


def _testable(catalog: Catalog) -> list[Site]:
    """Sites whose catalog image is in the engine (the others have nothing to test yet)."""
    from imgforge.engine import docker_client

    names = {tag for image in docker_client().images.list() for tag in image.tags}
    sites = [s for s in catalog.sites.values() if s.reference in names]
    if not sites:
        raise UsageError("no site has a built image: run `imgforge build --all` first")
    return sites


def _show(report: VerifyReport) -> None:
    title = Text(f"{report.site}: {report.image} ({report.image_id[:19]})")
    table = Table("check", "result", "detail", title=title, title_justify="left")
    for check in report.checks:
        # Details quote "[emerg]" and file names: plain text, never markup.
        table.add_row(check.name, "[green]pass[/]" if check.ok else "[bold red]FAIL[/]", Text(check.detail))
    console.print(table)
    failed = len(report.failed)
    console.print(
        f"[green]all {len(report.checks)} checks passed[/]"
        if not failed
        else f"[red]{failed} of {len(report.checks)} checks failed[/]"
    )
