"""``imgforge audit | migrate | fleet``: thin wrappers over ``imgforge.audit`` (errors raised, not printed)."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from imgforge.cli._app import JsonOpt, RepoOpt, RootOpt, app, console, print_json
from imgforge.errors import EXIT_FAILED, EXIT_OK

PathArg = Annotated[Path, typer.Argument(help="The site repo (holds its Dockerfile and nginx configs).")]
AuditPathArg = Annotated[
    Path | None, typer.Argument(help="The site repo (holds its Dockerfile and nginx configs).", show_default=False)
]
ImageOpt = Annotated[
    str | None,
    typer.Option(
        "--image",
        help="Audit an image instead: REF from its registry, docker:REF (local engine), oci:PATH[:NAME], "
        "docker-archive:PATH.",
        show_default=False,
    ),
]
PlatformOpt = Annotated[
    str | None,
    typer.Option("--platform", help="Platform of a multi-platform image (linux/arm64).", show_default="the host's"),
]


class Format(StrEnum):
    md = "md"
    json = "json"


def _say(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


@app.command("audit")
def audit_cmd(
    path: AuditPathArg = None, image: ImageOpt = None, platform: PlatformOpt = None, json_out: JsonOpt = False
) -> None:
    """Audit a site repo, or an image (--image), against the hardening contract. Exit 0 clean, 1 errors,
    2 unreadable (4 image not found, 5 engine, 7 registry)."""
    from imgforge import audit
    from imgforge.errors import UsageError

    if (path is None) == (image is None):
        raise UsageError("audit: give a repo PATH or --image REF (one of them)")
    if image is not None:
        with audit.open_image(image, platform=platform) as resolved:
            result = audit.audit_image(resolved, image)
        findings, shown, extra = (
            result.findings,
            image,
            {"digest": result.digest, "id": result.config_digest, "platform": result.platform},
        )
    else:
        assert path is not None
        if platform is not None:
            raise UsageError("audit: --platform goes with --image")
        findings, shown, extra = audit.audit_repo(path), str(path), {}
    counts = audit.summary(findings)
    if json_out:
        print_json({"path": shown, **extra, "summary": counts, "findings": [f.as_dict() for f in findings]})
    else:
        for f in findings:
            _say(f"{f.location()}: {f.severity} {f.rule} {f.message}")
        _say(
            f"{len(findings)} findings: {counts['error']} errors, {counts['warning']} warnings, {counts['info']} info"
            if findings
            else f"{shown}: no findings"
        )
    raise typer.Exit(EXIT_FAILED if audit.has_errors(findings) else EXIT_OK)


@app.command("migrate")
def migrate_cmd(
    path: PathArg,
    site: Annotated[str, typer.Option("--site", help="Name of the new catalog entry (sites/NAME.toml).")],
    root: RootOpt = None,
    image: Annotated[
        str | None, typer.Option("--image", help="Image repository, when the repo's CI does not name it.")
    ] = None,
    tag: Annotated[
        str | None,
        typer.Option("--tag", help="First hardened tag.", show_default="the patch after the repo's newest tag"),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Write sites/NAME.toml for an existing root site repo; list what could not be carried over."""
    from imgforge.audit import migrate

    text, not_carried = migrate.migrate_repo(path, site, root, image=image, tag=tag)
    written = migrate.write_site(root, site, text)
    if json_out:
        print_json({"file": str(written), "site": site, "toml": text, "not_carried": not_carried})
        return
    _say(f"wrote {written}")
    if not_carried:
        _say(f"not carried over ({len(not_carried)}):")
        for note in not_carried:
            _say(f"  {note}")


@app.command("fleet")
def fleet_cmd(
    repo: RepoOpt,
    fmt: Annotated[Format, typer.Option("--format", help="md: the audit table; json: for tools.")] = Format.md,
    overlays: Annotated[
        str | None,
        typer.Option(
            "--overlays", help="App overlays folder inside the repo.", show_default="fluxcd/apps/overlays/production"
        ),
    ] = None,
    jobs: Annotated[
        int | None, typer.Option("--jobs", min=1, help="Renders (and image reads) at once.", show_default="2 × CPUs")
    ] = None,
    registry: Annotated[
        bool,
        typer.Option(
            "--registry", help="Read each container's image from its registry: its USER and its audit summary."
        ),
    ] = False,
    key: Annotated[
        Path | None,
        typer.Option(
            "--key",
            metavar="COSIGN_PUB",
            help="With --registry: a Trust column, whether each image is signed by this key and attested.",
            show_default="IMGFORGE_SIGNING_KEY_PUB",
        ),
    ] = None,
) -> None:
    """Render every app overlay with kustomize and report each container's non-root status.

    Exit 1 when an app failed to render (it is listed with kustomize's error), else 0.
    """
    from imgforge.audit import fleet
    from imgforge.config import DEFAULT_OVERLAY_ROOT

    trust = None
    if registry:
        from imgforge import proof

        found = proof.verifying_key(key)
        trust = (lambda ref: proof.trust_verdict(ref, found)) if found is not None else None
    report = fleet.fleet_report(repo, overlays or DEFAULT_OVERLAY_ROOT, jobs=jobs, registry=registry, trust=trust)
    if fmt is Format.json:
        print_json(report.as_dict())
    else:
        sys.stdout.write(fleet.to_markdown(report))
        sys.stdout.flush()
    raise typer.Exit(EXIT_FAILED if report.failures else EXIT_OK)
