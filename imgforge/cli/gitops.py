"""``imgforge gitops plan|apply``: thin wrappers over ``imgforge.gitops`` (errors raised, not printed)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from imgforge.cli._app import (
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

if TYPE_CHECKING:
    from imgforge.gitops import GitopsPlan

gitops_app = typer.Typer(
    help="Patch a site's app in the GitOps repo: tag, securityContext, port.", no_args_is_help=True
)
app.add_typer(gitops_app, name="gitops")


def _plan(site: str, repo: Path, root: Path | None, tag: str | None, level: str, pin: bool | None) -> GitopsPlan:
    from imgforge import config, update

    return update.plan_deploy(config.load_catalog(root), site, repo, tag=tag, level=level, pin=pin)


def _summary(plan: GitopsPlan) -> None:
    console.print(
        f"{plan.site} ({plan.app}): {plan.image} {plan.old_tag or '?'} → {plan.new_tag}"
        + (f"@{plan.digest}" if plan.digest else ""),
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    for change in plan.security_changes:
        console.print(f"  securityContext  {change}", markup=False, highlight=False, soft_wrap=True)
    if plan.port_change:
        console.print(f"  containerPort    {plan.port_change}", markup=False, highlight=False, soft_wrap=True)


@gitops_app.command("plan")
def plan_cmd(
    site: SiteArg,
    repo: RepoOpt,
    tag: TagOpt = None,
    level: LevelOpt = "restricted",
    pin_digest: PinDigestOpt = None,
    root: RootOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Print the unified diff that would deploy SITE (proved with kubectl kustomize); change nothing."""
    plan = _plan(site, repo, root, tag, level, pin_digest)
    if json_out:
        print_json(plan.to_dict())
        return
    if plan.noop:
        console.print(
            f"{plan.site}: nothing to change ({plan.image}:{plan.new_tag} already deployed "
            "with its securityContext and port)",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        return
    _summary(plan)
    typer.echo(plan.diff, nl=False)


@gitops_app.command("apply")
def apply_cmd(
    site: SiteArg,
    repo: RepoOpt,
    tag: TagOpt = None,
    level: LevelOpt = "restricted",
    pin_digest: PinDigestOpt = None,
    root: RootOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Write the planned change into the GitOps work tree (all files or none)."""
    plan = _plan(site, repo, root, tag, level, pin_digest)
    from imgforge import gitops

    written = gitops.apply(plan)
    if json_out:
        print_json({**plan.to_dict(), "written": [str(p) for p in written]})
        return
    if not written:
        console.print(f"{plan.site}: nothing to change", markup=False, highlight=False, soft_wrap=True)
        return
    _summary(plan)
    for path in written:
        console.print(f"  wrote {path}", markup=False, highlight=False, soft_wrap=True)
