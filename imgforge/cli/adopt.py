"""``imgforge adopt``: a thin wrapper over ``imgforge.adopt`` (errors raised, not printed)."""

from __future__ import annotations

from typing import Annotated

import typer

from imgforge.cli._app import JsonOpt, RepoOpt, RootOpt, app, console, print_json


def _say(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


@app.command("adopt")
def adopt_cmd(
    repo: RepoOpt,
    root: RootOpt = None,
    match: Annotated[
        str | None, typer.Option("--match", help="Only apps whose folder name matches this regular expression.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the entries; write nothing.")] = False,
    jobs: Annotated[int | None, typer.Option("--jobs", min=1, help="Renders and image reads at once.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Write sites/NAME.toml for every root nginx site the GitOps repo runs, from its running image.

    Sites that cannot be adopted are listed with the reason (exit 0); existing entries are never
    overwritten, and on any failure nothing is written.
    """
    from imgforge.adopt import adopt

    result = adopt(repo, root, match=match, dry_run=dry_run, jobs=jobs)
    if json_out:
        print_json(result.as_dict())
        return
    for entry in result.adopted:
        verb = ("filled in [source] of" if entry.completes else "wrote") if result.written else "would write"
        _say(f"{verb} {entry.file}: app {entry.app}, {entry.image} ({entry.digest[:19]}), {entry.content_dir}")
        if dry_run:
            _say(entry.text)
    if not result.adopted:
        _say("no site to adopt")
    if result.not_adopted:
        _say(f"not adopted ({len(result.not_adopted)}):")
        for n in result.not_adopted:
            _say(f"  {n.app} ({n.workload}, container {n.container}): {n.reason}")
