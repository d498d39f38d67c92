"""Commands of the core pipeline: sites, render, build, base.

Library modules are imported inside the commands: every invocation pays only for what it runs
(docker-py, jinja2 and pydantic together cost more start-up time than a warm build itself).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from imgforge.cli._app import JsonOpt, RootOpt, app, console, err_console, print_json
from imgforge.errors import ContentMissing, ImgforgeError, UsageError

if TYPE_CHECKING:
    from imgforge import config
    from imgforge.build import BuildResult, EngineLookup
    from imgforge.hashcache import HashCache

ForceOpt = Annotated[bool, typer.Option("--force", help="Rebuild even when the inputs digest matches an image.")]


@app.command("sites")
def sites_cmd(root: RootOpt = None, json_out: JsonOpt = False) -> None:
    """List the site catalog."""
    from imgforge import config

    catalog = config.load_catalog(root)
    rows = [_site_row(catalog, s) for s in catalog.sites.values()]
    if json_out:
        print_json(rows)
        return
    table = Table("site", "image", "profile", "uid:gid", "port", "fallback", "content")
    for r in rows:
        table.add_row(
            r["site"],
            r["image"],
            r["profile"],
            f"{r['uid']}:{r['gid']}",
            str(r["port"]),
            r["fallback"],
            r["content"] or "[dim]not configured[/]",
        )
    console.print(table)


@app.command("render")
def render_cmd(
    site: Annotated[str, typer.Argument(help="Site name.")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Folder to write the build context to: a new folder or an earlier render (see README)."
        ),
    ] = None,
    root: RootOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Write a site's complete build context (Dockerfile, nginx config, entrypoint, content)."""
    from imgforge import config
    from imgforge.hashcache import HashCache
    from imgforge.render import MANIFEST_FILE, render_site

    catalog = config.load_catalog(root)
    cache = HashCache.default()
    context, out_dir = render_site(catalog, catalog.site(site), out, cache)
    cache.save()
    generated = sorted([*context.files, MANIFEST_FILE])
    if json_out:
        print_json(
            {
                "site": site,
                "out": str(out_dir),
                "digest": context.digest(),
                "files": generated,
                "content_files": len(context.content_files),
                "left_out": context.left_out,
                "manifest_digest": context.manifest().digest,
            }
        )
    else:
        # Paths and file names are printed as they are: no rich markup, no :emoji: codes.
        console.print(
            f"rendered {site} into {out_dir} ({len(generated)} generated files, "
            f"{len(context.content_files)} content files)",
            markup=False,
            emoji=False,
            highlight=False,
            soft_wrap=True,
        )
        if context.left_out:
            err_console.print(
                f"left out of the image (dotfiles, server-side source, secrets, links to them): "
                f"{', '.join(context.left_out)}",
                markup=False,
                emoji=False,
                highlight=False,
                soft_wrap=True,
            )


@app.command("build")
def build_cmd(
    site: Annotated[str | None, typer.Argument(help="Site name (or --all).")] = None,
    all_sites: Annotated[bool, typer.Option("--all", help="Build every site whose content is available.")] = False,
    force: ForceOpt = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Ignore the engine's layer cache too.")] = False,
    test: Annotated[bool, typer.Option("--test", help="Run `imgforge test` on each image after building it.")] = False,
    builder: Annotated[
        str | None,
        typer.Option("--builder", help="docker or oci (default: the site's catalog `builder`, else docker)."),
    ] = None,
    platform: Annotated[
        list[str] | None,
        typer.Option("--platform", help="oci builder, multi-platform base: build only this platform (repeatable)."),
    ] = None,
    root: RootOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Render and build a site's image (skipped when nothing changed), optionally testing it."""
    if (site is None) != all_sites:
        raise UsageError("name one site or pass --all")
    if builder not in (None, "docker", "oci"):
        raise UsageError(f"--builder: expected docker or oci, got {builder!r}")
    from imgforge import config
    from imgforge.hashcache import HashCache

    catalog = config.load_catalog(root)
    targets = list(catalog.sites.values()) if site is None else [catalog.site(site)]
    if builder is not None:
        targets = [_with_builder(t, builder) for t in targets]
    if platform and any(t.builder != "oci" for t in targets):
        raise UsageError("--platform selects platforms of a multi-platform base: only with the oci builder")
    lookup: Any = None  # one look at the engine's images for all the docker builds (none: no docker-py import)
    if any(t.builder == "docker" for t in targets):
        from imgforge.build import EngineLookup

        lookup = EngineLookup()
    bases = None  # the oci builder's bases, pinned once for all the sites
    cache = HashCache.default()  # one content hash cache for all the sites, saved once at the end
    rows: list[dict[str, Any]] = []
    failed: ImgforgeError | None = None
    try:
        for target in targets:
            try:
                if target.builder == "oci":
                    from imgforge.oci import BaseLookup, build_site_oci

                    bases = bases or BaseLookup()
                    result: Any = build_site_oci(
                        catalog, target, force=force, platforms=platform or (), cache=cache, lookup=bases
                    )
                else:
                    result = _build_one(catalog, target, force, no_cache, lookup, cache, quiet=json_out)
            except ImgforgeError as e:  # with --all, one site's problem is its row; the others still build
                if not all_sites:
                    raise
                unavailable = isinstance(e, ContentMissing)
                failed = failed if unavailable else failed or e
                rows.append(
                    {
                        "site": target.name,
                        "image": target.reference,
                        "status": "unavailable" if unavailable else "failed",
                        "detail": str(e),
                    }
                )
                continue
            row = {**result.to_dict(), "status": "skipped" if result.skipped else "built"}
            if test:
                row["test"] = _test_one(target, result, quiet=json_out)
                if not row["test"]["ok"]:
                    row["status"] = "test failed"
            rows.append(row)
    finally:
        cache.save()
    _report_builds(rows, json_out, single=not all_sites)
    if failed is not None or any(r["status"] in ("failed", "test failed") for r in rows):
        raise typer.Exit(failed.exit_code if failed is not None else 1)


def _build_one(
    catalog: config.Catalog,
    site: config.Site,
    force: bool,
    no_cache: bool,
    lookup: EngineLookup,
    cache: HashCache,
    quiet: bool,
) -> BuildResult:
    from imgforge.build import BuildEvent, build_site

    with err_console.status(f"building {site.name}", spinner="dots") as status:

        def show(event: BuildEvent) -> None:
            if event.kind == "step":
                status.update(f"building [bold]{site.name}[/]: step {event.text[:90]}")
            elif event.kind == "skip" and not quiet:
                err_console.print(f"{site.name}: {event.text}", highlight=False)

        return build_site(catalog, site, force=force, no_cache=no_cache, on_event=show, lookup=lookup, cache=cache)


def _with_builder(site: config.Site, builder: str) -> config.Site:
    """``site`` built with ``builder`` for this run; the oci builder only for the profiles it serves."""
    from imgforge import config

    if builder == "oci" and site.profile not in config.OCI_PROFILES:
        raise UsageError(
            f"{site.file}: --builder oci: profile {site.profile} installs nginx with a package manager, "
            "which only the docker builder can run (README: builders)"
        )
    return site.model_copy(update={"builder": builder})


def _test_one(site: config.Site, result: Any, quiet: bool) -> dict[str, Any]:
    """``imgforge test`` of the image just built, read from that image like any other test.

    An oci build is loaded into the engine first and its config proven with ``nginx -t``.
    """
    from imgforge import verify  # the verify stage sits after build; import it only when asked

    with err_console.status(f"testing {site.name}", spinner="dots"):
        image = result.id
        if site.builder == "oci":
            from imgforge.release_oci import load_for_test

            image = load_for_test(site)
        report = verify.run_image(image, site=site.name)
    data = report.to_dict()
    if not quiet:
        for check in data["checks"]:
            mark = "[green]pass[/]" if check["ok"] else "[red]FAIL[/]"
            err_console.print(f"  {mark} ", end="", highlight=False)
            err_console.print(f"{check['name']}: {check['detail']}", markup=False, highlight=False)
    return data


def _report_builds(rows: list[dict[str, Any]], json_out: bool, single: bool) -> None:
    if json_out:
        print_json(rows[0] if single else rows)
        return
    if single:
        r = rows[0]
        verb = "unchanged, reused" if r["status"] == "skipped" else r["status"]
        console.print(f"{r['image']}: {verb} ({r['id'][:19]})", highlight=False)
        return
    table = Table("site", "image", "status", "id / detail")
    for r in rows:
        table.add_row(r["site"], r["image"], r["status"], r.get("id", "")[:19] or r.get("detail", ""))
    console.print(table)


base_app = typer.Typer(
    help="Local base images for hosts that cannot pull (see README: base images).", no_args_is_help=True
)
app.add_typer(base_app, name="base")


@base_app.command("bootstrap")
def base_bootstrap_cmd(
    distro: Annotated[str, typer.Argument(help="Only 'debian' (bookworm) is supported.")],
    with_nginx: Annotated[bool, typer.Option("--with-nginx", help="Also make the base with nginx-light.")] = False,
    mirror: Annotated[str | None, typer.Option("--mirror", help="Debian mirror URL.")] = None,
) -> None:
    """debootstrap a Debian minbase and import it into the Docker engine."""
    if distro != "debian":
        raise UsageError(f"unknown base '{distro}': only 'debian' can be bootstrapped")
    from imgforge import baseimage

    made = baseimage.bootstrap_debian(
        with_nginx=with_nginx, mirror=mirror, on_line=lambda line: err_console.print(f"==> {line}", highlight=False)
    )
    for name in made:
        console.print(f"made {name}")


@base_app.command("status")
def base_status_cmd(
    json_out: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing; exit 1 if one is missing.")] = False,
) -> None:
    """Show which local base images exist; exit 1 when one is missing."""
    from imgforge import baseimage

    found = baseimage.status()
    if json_out:
        print_json([s.to_dict() for s in found])
    elif not quiet:
        table = Table("image", "present", "purpose")
        for s in found:
            table.add_row(s.name, "yes" if s.id else "[red]no[/]", s.purpose)
        console.print(table)
    if not all(s.id for s in found):
        raise typer.Exit(1)


@base_app.command("check")
def base_check_cmd(
    sites: Annotated[list[str] | None, typer.Argument(help="Sites to check (default: all).")] = None,
    root: RootOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List the sites whose last release was built on an older digest of their base."""
    from imgforge import base_update, config

    rows = base_update.check(config.load_catalog(root), sites or ())
    if json_out:
        print_json([r.to_dict() for r in rows])
        return
    table = Table("site", "base", "released on", "base now", "status")
    for r in rows:
        table.add_row(
            r.site,
            r.base,
            (r.released or "-")[:19],
            (r.current or "-")[:19],
            r.status + (f": {r.detail}" if r.detail else ""),
        )
    console.print(table)


@base_app.command("update")
def base_update_cmd(
    sites: Annotated[list[str] | None, typer.Argument(help="Sites to update (default: every outdated one).")] = None,
    root: RootOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Release every site whose base moved again (patch bump, test, push; digest pins moved)."""
    from imgforge import base_update, config

    done = base_update.update(
        config.load_catalog(root),
        sites or (),
        on_event=lambda ev: (
            None
            if json_out or getattr(ev, "kind", "") != "stage"
            else err_console.print(f"==> {ev.text}", markup=False, highlight=False)
        ),
    )
    if json_out:
        print_json(done)
    else:
        for row in done:
            if row.get("error"):
                err_console.print(f"not signed: {row['site']}: {row['error']}", markup=False, highlight=False)
            else:
                line = f"released {row['reference']}@{row['digest']} on {row['base']}"
                console.print(line, markup=False, soft_wrap=True)
        if not done:
            console.print("every released site is on its base's current digest", markup=False)
    if (failed := base_update.signing_failures(done)) is not None:
        raise failed


def _site_row(catalog: config.Catalog, site: config.Site) -> dict[str, Any]:
    src = site.source
    where = None
    if src and src.path is not None:
        where = f"{src.path}/{src.content_dir}"
    elif src and src.git:
        where = f"{src.git}@{src.ref}:{src.content_dir}"
    elif src and src.image:
        where = f"image {src.image}:{src.content_dir}"
    return {
        "site": site.name,
        "image": site.reference,
        "profile": site.profile,
        "base_image": catalog.profile(site).base_image,
        "uid": site.uid,
        "gid": site.gid,
        "port": site.port,
        "fallback": site.fallback,
        "ipv6": site.ipv6,
        "read_only_root": site.read_only_root,
        "content": where,
        "app": site.app,
        "namespace": site.gitops.namespace,
        "file": site.file,
    }
