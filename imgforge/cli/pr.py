"""Commands ``pr`` and ``update``: one merge/pull request per site, and the Renovate-style loop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from imgforge.cli._app import (
    AllOpt,
    JsonOpt,
    LevelOpt,
    PinDigestOpt,
    RepoOpt,
    RootOpt,
    SiteArg,
    TagOpt,
    app,
    console,
    print_json,
)
from imgforge.errors import ImgforgeError, UsageError

if TYPE_CHECKING:
    from imgforge.config import Catalog
    from imgforge.proof import VerifyingKey

ForgeOpt = Annotated[
    str | None,
    typer.Option(
        "--forge", help="gitlab, github or gitea (default: IMGFORGE_FORGE, else guessed from the remote's host)."
    ),
]
ForgeUrlOpt = Annotated[
    str | None,
    typer.Option("--forge-url", help="Forge base URL (default: IMGFORGE_FORGE_URL, else from the remote URL)."),
]
ProjectOpt = Annotated[
    str | None,
    typer.Option(
        "--project",
        help="Project path on the forge, e.g. ops/gitops (default: IMGFORGE_FORGE_PROJECT, else from the remote).",
    ),
]
BranchOpt = Annotated[str | None, typer.Option("--branch", help="Branch name (default imgforge/<site>-<tag>).")]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Show branch, commit, diff and request body; change nothing.")
]
SitesArg = Annotated[list[str] | None, typer.Argument(help="Sites (or --all).")]
AllowMajorOpt = Annotated[bool, typer.Option("--allow-major", help="Also open requests for major bumps.")]
RemoteOpt = Annotated[str, typer.Option("--remote", help="Git remote to push to.")]
BaseOpt = Annotated[str | None, typer.Option("--base", help="Target branch (default: the remote's HEAD branch).")]
RunCiOpt = Annotated[
    bool,
    typer.Option(
        "--run-ci", help="Leave '\\[skip ci]' out of the commit, so the request's pipeline runs on the bot commit."
    ),
]


KeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--key",
        metavar="COSIGN_PUB",
        help="Public key the proposed image must be signed and attested with.",
        show_default="IMGFORGE_SIGNING_KEY_PUB, else [signing] public_key in imgforge.toml",
    ),
]
AllowUnverifiedOpt = Annotated[
    bool,
    typer.Option(
        "--allow-unverified",
        help="Propose a tag whose signature or test attestation does not verify (the request says so at the top).",
    ),
]


def _key(flag: Path | None, catalog: Catalog) -> VerifyingKey | None:
    """The verifying key: --key, IMGFORGE_SIGNING_KEY_PUB, [signing] public_key; None when none is set."""
    from imgforge import proof

    return proof.verifying_key(flag, catalog.public_key)


def _say(text: str) -> None:
    """Plain text, never wrapped or marked up: diffs and commit messages must print verbatim."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _remote_url(repo: Path, remote: str) -> str:
    from imgforge.gitops import branch

    return branch.remote_url(branch.open_repo(repo), remote)


@app.command("pr")
def pr_cmd(
    site: SiteArg,
    repo: RepoOpt,
    forge: ForgeOpt = None,
    forge_url: ForgeUrlOpt = None,
    project: ProjectOpt = None,
    remote: RemoteOpt = "origin",
    base: BaseOpt = None,
    branch: BranchOpt = None,
    tag: TagOpt = None,
    level: LevelOpt = "restricted",
    run_ci: RunCiOpt = False,
    dry_run: DryRunOpt = False,
    key: KeyOpt = None,
    allow_unverified: AllowUnverifiedOpt = False,
    pin_digest: PinDigestOpt = None,
    root: RootOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Patch SITE on a branch, push it and open (or refresh) its merge/pull request.

    The tag is resolved to its digest in the registry and must be signed, with a passing test
    attestation, by the configured key (--key, IMGFORGE_SIGNING_KEY_PUB, [signing] public_key).
    """
    from imgforge import config
    from imgforge import forge as forges
    from imgforge.update import open_or_update_pr

    catalog = config.load_catalog(root)
    the_site = catalog.site(site)
    url = _remote_url(repo, remote)
    target, cls = None, None
    if dry_run:
        try:
            cls = forges.resolve(forge, url=forge_url, project=project, remote_url=url)[0]
        except ImgforgeError:
            cls = None  # unknown forge: the dry run shows the forge-neutral title and body
    else:
        target = forges.connect(forge, url=forge_url, project=project, remote_url=url)
    result = open_or_update_pr(
        catalog,
        the_site,
        repo,
        forge=target,
        forge_class=cls,
        tag=tag,
        level=level,
        branch=branch,
        remote=remote,
        base_branch=base,
        dry_run=dry_run,
        skip_ci=not run_ci,
        key=_key(key, catalog),
        allow_unverified=allow_unverified,
        pin_digest=catalog.settings.pin_digest if pin_digest is None else pin_digest,
    )
    if json_out:
        print_json(result.to_dict())
        return
    if result.action == "up-to-date":
        _say(f"{site}: {result.base} already deploys {result.tag} with these settings; nothing to do")
        return
    if dry_run:
        _say(f"branch: {result.branch} (from {result.base} at {result.base_commit[:8]}, as last fetched)")
        _say(f"commit message:\n{result.message}")
        _say(result.diff.rstrip("\n"))
        _say(f"request body ({cls.name if cls else 'forge unknown'}):\n{json.dumps(result.payload, indent=2)}")
        return
    req = result.request
    if req is None or target is None:  # only an up-to-date overlay or a dry run ends without a request
        _say(f"{site}: {result.action}")
        return
    pushed = f", pushed {(result.commit or '')[:8]}" if result.pushed else ", branch already current"
    _say(
        f"{site}: {result.action} {target.noun} {req.url or '#' + str(req.number)} "
        f"({result.branch} -> {result.base}{pushed})"
    )
    for old in result.superseded:
        _say(f"  closed superseded {old.url or '#' + str(old.number)} ({old.source_branch})")
    for warning in result.warnings:
        _say(f"  warning: {warning}")


@app.command("update")
def update_cmd(
    repo: RepoOpt,
    sites: SitesArg = None,
    all_sites: AllOpt = False,
    allow_major: AllowMajorOpt = False,
    forge: ForgeOpt = None,
    forge_url: ForgeUrlOpt = None,
    project: ProjectOpt = None,
    remote: RemoteOpt = "origin",
    base: BaseOpt = None,
    level: LevelOpt = "restricted",
    run_ci: RunCiOpt = False,
    key: KeyOpt = None,
    allow_unverified: AllowUnverifiedOpt = False,
    pin_digest: PinDigestOpt = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Only look up: current, latest, target and its verification; no forge, no git remote."
        ),
    ] = False,
    root: RootOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Open or refresh a request for every site whose registry release is ahead of GitOps.

    A release is proposed only when its digest verifies with the configured key (see `pr`).
    """
    from imgforge import config
    from imgforge import forge as forges
    from imgforge.errors import UpdateFailed
    from imgforge.update import update_sites

    catalog = config.load_catalog(root)
    if all_sites == bool(sites):
        raise UsageError("name sites or pass --all (not both)")
    names = sorted(catalog.sites) if all_sites else list(sites or [])
    if dry_run:
        from imgforge.update import lookup_sites

        found = lookup_sites(catalog, names, repo, allow_major=allow_major, key=_key(key, catalog))
        if json_out:
            print_json([r.to_dict() for r in found])
        else:
            lookup = Table("site", "gitops", "registry", "target", "status", "detail")
            for r in found:
                lookup.add_row(*(escape(x or "-") for x in (r.site, r.current, r.latest, r.target, r.status, r.detail)))
            console.print(lookup)
        if any(r.error is not None for r in found):
            raise UpdateFailed([(r.site, r.error) for r in found if r.error is not None])
        return
    rows = update_sites(
        catalog,
        names,
        repo,
        allow_major=allow_major,
        remote=remote,
        base_branch=base,
        level=level,
        skip_ci=not run_ci,
        key=_key(key, catalog),
        allow_unverified=allow_unverified,
        pin_digest=catalog.settings.pin_digest if pin_digest is None else pin_digest,
        forge=lambda: forges.connect(forge, url=forge_url, project=project, remote_url=_remote_url(repo, remote)),
    )
    if json_out:
        print_json([r.to_dict() for r in rows])
    else:
        table = Table("site", "gitops", "registry", "status", "detail")
        for r in rows:
            table.add_row(
                escape(r.site),
                escape(r.current or "-"),
                escape(r.latest or "-"),
                escape(r.status),
                escape((r.url + " " if r.url else "") + r.detail),
            )
        console.print(table)
    if any(r.error is not None for r in rows):
        raise UpdateFailed([(r.site, r.error) for r in rows if r.error is not None])
