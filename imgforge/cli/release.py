"""Registry commands: tags, bump, push, release. Each parses flags, calls imgforge.release, prints."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn
from rich.segment import Segment
from rich.style import Style

from imgforge.cli._app import JsonOpt, RootOpt, SiteArg, app, console, err_console, print_json
from imgforge.errors import UsageError

PatchOpt = Annotated[bool, typer.Option("--patch", help="Bump the patch version (v1.2.3 -> v1.2.4).")]
MinorOpt = Annotated[bool, typer.Option("--minor", help="Bump the minor version (v1.2.3 -> v1.3.0).")]
MajorOpt = Annotated[bool, typer.Option("--major", help="Bump the major version (v1.2.3 -> v2.0.0).")]


def _bump_choice(patch: bool, minor: bool, major: bool, to: str | None) -> str | None:
    """The one bump kind chosen, or None when ``--to`` names the version instead."""
    chosen = [name for name, on in (("patch", patch), ("minor", minor), ("major", major)) if on]
    if len(chosen) + (to is not None) != 1:
        raise UsageError("choose exactly one of --patch, --minor, --major or --to vX.Y.Z")
    return chosen[0] if chosen else None


def _part(patch: bool, minor: bool, major: bool) -> str:
    """The one bump kind chosen (release has no ``--to``)."""
    chosen = [name for name, on in (("patch", patch), ("minor", minor), ("major", major)) if on]
    if len(chosen) != 1:
        raise UsageError("choose exactly one of --patch, --minor, --major")
    return chosen[0]


@app.command("tags")
def tags_cmd(site: SiteArg, root: RootOpt = None, json_out: JsonOpt = False) -> None:
    """List the registry's versions of SITE's image, the catalog's current tag marked."""
    from imgforge import config, release

    listing = release.list_versions(config.load_catalog(root), site)
    if json_out:
        print_json(listing.to_dict())
        return
    console.print(_VersionsTable(listing), soft_wrap=True, end="")
    if listing.current in listing.other:
        console.print(f"catalog tag {listing.current} is not a semver version", markup=False, soft_wrap=True)
    elif listing.current not in {v.tag for v in listing.versions}:
        console.print(f"catalog tag {listing.current} is not in the registry yet", markup=False, soft_wrap=True)
    if listing.other:
        console.print(
            f"ignored (not semver): {', '.join(listing.other)}", markup=False, highlight=False, soft_wrap=True
        )


class _VersionsTable:
    """Newest first, one line per version, yielded as rich Segments: rich's Table renders about
    1 ms per row and a Text about 75 µs per line, 20 s and 1.5 s for a repository with 20,000
    tags (bench/bench_tags.py); segments are written as they are. Tags here are semver, so they
    hold no control characters."""

    def __init__(self, listing: Any):
        self.listing = listing

    def __rich_console__(self, console: Any, options: Any) -> Iterator[Segment]:
        listing = self.listing
        width = max((len(v.tag) for v in listing.versions), default=0)
        yield from (Segment(listing.repository, Style(bold=True)), Segment.line())
        yield from (Segment("  version", Style(dim=True)), Segment.line())
        current = Style(bold=True, color="green")
        for v in reversed(listing.versions):
            is_current = v.tag == listing.current
            mark = "← catalog" if is_current else ("pre-release" if v.prerelease else "")
            yield Segment(f"  {v.tag:<{width}}  {mark}".rstrip(), current if is_current else None)
            yield Segment.line()
        yield from (Segment(f"{len(listing.versions)} versions", Style(dim=True)), Segment.line())


@app.command("bump")
def bump_cmd(
    site: SiteArg,
    patch: PatchOpt = False,
    minor: MinorOpt = False,
    major: MajorOpt = False,
    to: Annotated[str | None, typer.Option("--to", help="Set this exact version, e.g. v1.4.0.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the new tag; change nothing.")] = False,
    root: RootOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Write the next version of SITE into its TOML file; refuses a tag the registry already has."""
    from imgforge import config, release

    part = _bump_choice(patch, minor, major, to)
    plan = release.bump(config.load_catalog(root), site, part, to, dry_run=dry_run)
    if json_out:
        print_json(plan.to_dict())
        return
    verb = "would change" if dry_run else "changed"
    console.print(
        f"{plan.site}: {verb} tag {plan.current} -> {plan.new} ({plan.repository})", markup=False, soft_wrap=True
    )


@app.command("push")
def push_cmd(
    site: SiteArg,
    also_latest: Annotated[bool, typer.Option("--also-latest", help="Also push the image as :latest.")] = False,
    skip_verify: Annotated[
        bool, typer.Option("--skip-verify", help="Push even if the last `imgforge test` failed or never ran.")
    ] = False,
    tag: Annotated[
        str | None,
        typer.Option("--tag", help="Push the image under this tag instead (e.g. dev-<sha8> for branch builds)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite a release tag the registry holds with other bytes.")
    ] = False,
    root: RootOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Push SITE's image, then check the registry's manifest digest equals the local one."""
    from imgforge import config, release

    catalog = config.load_catalog(root)
    with _Progress(quiet=json_out) as on_event:
        result = release.push(
            catalog, site, also_latest=also_latest, skip_verify=skip_verify, tag=tag, force=force, on_event=on_event
        )
    if json_out:
        print_json(result.to_dict())
        return
    console.print(f"pushed {result.reference}@{result.digest}", markup=False, highlight=False, soft_wrap=True)
    for ref in result.also:
        console.print(f"pushed {ref}@{result.digest}", markup=False, highlight=False, soft_wrap=True)
    _print_signed(result.signed)


@app.command("release")
def release_cmd(
    site: SiteArg,
    patch: PatchOpt = False,
    minor: MinorOpt = False,
    major: MajorOpt = False,
    root: RootOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Build, test, bump and push SITE; stops at the first failure with nothing pushed."""
    from imgforge import config, release

    part = _part(patch, minor, major)
    catalog = config.load_catalog(root)
    with _Progress(quiet=json_out) as on_event:
        result = release.release(catalog, site, part, on_event=on_event)
    if json_out:
        print_json(result.to_dict())
        return
    console.print(
        f"released {result.reference}@{result.digest} (was {result.previous})",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    _print_signed(result.signed)


def _print_signed(signed: dict[str, Any] | None) -> None:
    if signed:
        console.print(
            f"signed with key sha256:{signed['fingerprint']}; attached {len(signed['predicates'])} attestations "
            f"({signed['attestation_tag']}, via {signed['via']})",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


class _Progress:
    """Live layer bars for pushes and one line per stage; warnings always go to stderr."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.live = not quiet and console.is_terminal  # no bars in logs and pipes, just the lines
        self.bars = Progress(
            TextColumn("{task.description}"), BarColumn(), DownloadColumn(), console=console, transient=True
        )
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> Callable[[Any], None]:
        if self.live:
            self.bars.start()
        return self.on_event

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self.bars.stop()

    def on_event(self, ev: Any) -> None:
        kind, text = getattr(ev, "kind", ""), getattr(ev, "text", "")
        if kind == "warning":
            err_console.print(f"WARNING: {text}", style="bold yellow", markup=False, highlight=False, soft_wrap=True)
        elif kind == "note":  # once per push: e.g. "not signed" (stderr, so --json stays one document)
            err_console.print(f"note: {text}", markup=False, highlight=False, soft_wrap=True)
        elif self.quiet:
            return
        elif kind == "layer" and self.live:
            task = self.tasks.get(ev.id)
            if task is None:
                task = self.tasks[ev.id] = self.bars.add_task(ev.id, total=None)
            self.bars.update(task, description=f"{ev.id} {text}", completed=ev.current or None, total=ev.total or None)
        elif kind in ("stage", "step", "skip"):
            self.bars.console.print(
                ("==> " if kind == "stage" else "    ") + text, markup=False, highlight=False, soft_wrap=True
            )


@app.command("rebuild")
def rebuild_cmd(
    reference: Annotated[str, typer.Argument(help="The pushed image, e.g. cr.example.com/team/site:v1.2.3.")],
    verify: Annotated[
        bool, typer.Option("--verify", help="Compare the rebuild with what the registry serves (required).")
    ] = False,
    root: RootOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Rebuild REF with the oci builder from the catalog and source; exit 1 when the registry differs."""
    if not verify:
        raise UsageError("rebuild needs --verify (it only checks; `imgforge build` makes images)")
    from imgforge import config
    from imgforge.errors import VerifyFailed
    from imgforge.oci.compare import rebuild_verify

    report = rebuild_verify(config.load_catalog(root), reference)
    if json_out:
        print_json(report.to_dict())
    elif report.same:
        console.print(f"{reference}: reproduced bit for bit ({report.rebuilt})", markup=False, soft_wrap=True)
    if not report.same:
        raise VerifyFailed(
            f"{reference}: the rebuild is {report.rebuilt}, the registry serves {report.registry}: "
            + "; ".join(report.differences or ["no difference found in the layers"])
        )
