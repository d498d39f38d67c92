"""What a bot merge/pull request says: branch name, title, commit message and description.

Pure text from a plan and its evidence, Renovate-style: a header, a table of the update, the
evidence, the files, the diff folded, a footer, and a hidden marker by which a later run finds
this site's requests again. Kept apart from the workflow so the wording can be read and tested
on its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from imgforge.config import Site
from imgforge.gitops import branch as gitbranch

if TYPE_CHECKING:
    from imgforge.evidence import Evidence
    from imgforge.gitops.plan import GitopsPlan

BRANCH_PREFIX = "imgforge/"


def branch_name(site: Site, tag: str) -> str:
    return f"{BRANCH_PREFIX}{site.name}-{tag}"


def site_marker(site: Site) -> str:
    """Hidden in every description: how a later run recognises this site's requests."""
    return f"<!-- imgforge:site={site.name} -->"


def title(site: Site, tag: str) -> str:
    return f"chore(image): update {site.image} to {tag}"


def commit_message(site: Site, plan: GitopsPlan, *, skip_ci: bool = True) -> str:
    lines = [
        title(site, plan.new_tag),
        "",
        f"Site {site.name} (app {plan.app}): {plan.old_tag or 'unknown'} -> {plan.new_tag}.",
    ]
    if plan.security_changes:
        lines.append("securityContext: " + "; ".join(plan.security_changes) + ".")
    if plan.port_change:
        lines.append(f"Container port: {plan.port_change}.")
    if skip_ci:
        lines += ["", gitbranch.SKIP_CI]
    lines += ["", gitbranch.TRAILER]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def evidence_lines(evidence: Evidence) -> list[str]:
    """The evidence section: the verified digest and key, each fact, the test checks, the SBOM diff."""
    out = [f"- Image digest: `{evidence.digest}`" if evidence.digest else "- Image digest: unknown"]
    if evidence.verified:
        out.append(
            f"- **Verified** with key `sha256:{evidence.key_fingerprint}` ({_cell(evidence.key_source or '')}): "
            "signature and attestations read from the registry"
        )
    else:
        out.append(
            f"- **Not verified**: {_cell('; '.join(evidence.reasons))}. Review with care."
            if evidence.facts or evidence.notes
            else "- **Not verified**. Review with care."
        )
    out += [f"- {'ok' if f['ok'] else 'FAIL'} {f['name']}: {_cell(str(f['detail']))}" for f in evidence.facts]
    if evidence.report is not None:
        checks = evidence.report.get("checks") or []
        passed = sum(1 for c in checks if c.get("ok"))
        verdict = "**passed**" if evidence.report.get("passed") and passed == len(checks) else "**FAILED**"
        out += [
            "",
            f"`imgforge test` of this digest (from its signed attestation): {verdict} ({passed}/{len(checks)} checks)",
            "",
            "| check | result | detail |",
            "|---|---|---|",
        ]
        out += [
            f"| {_cell(str(c.get('name')))} | {'ok' if c.get('ok') else 'FAIL'} | {_cell(str(c.get('detail', '')))} |"
            for c in checks
        ]
    out += _sbom_lines(evidence)
    return out


def _sbom_lines(evidence: Evidence) -> list[str]:
    diff = evidence.sbom_diff
    if diff is None:
        return []
    out = ["", f"SBOM changes against the deployed `{evidence.deployed}`:", ""]
    rows = [
        *(f"- package added: `{p}`" for p in diff["packages_added"]),
        *(f"- package removed: `{p}`" for p in diff["packages_removed"]),
        *(f"- package {c['direction']}: `{c['name']}` {c['old']} → {c['new']}" for c in diff["packages_changed"]),
        *(f"- file added: `{_cell(p)}`" for p in diff["files_added"]),
        *(f"- file removed: `{_cell(p)}`" for p in diff["files_removed"]),
        *(f"- file changed: `{_cell(p)}`" for p in diff["files_changed"]),
    ]
    return out + (rows or ["- no package or content file changed"])


def request_body(site: Site, plan: GitopsPlan, evidence: Evidence, files: list[str], *, skip_ci: bool = True) -> str:
    """The description: header, table, evidence, changed files, the diff folded, footer."""
    security = "<br>".join(f"`{_cell(c)}`" for c in plan.security_changes) or "none"
    rows = [
        "| site | image | from → to | securityContext changes | port change |",
        "|---|---|---|---|---|",
        f"| {site.name} (`{plan.app}`) | `{site.image}` | `{plan.old_tag or '?'}` → `{plan.new_tag}` | {security} "
        f"| {_cell(plan.port_change or 'none')} |",
    ]
    out = [f"### {title(site, plan.new_tag)}", ""]
    if not evidence.verified:  # only reached with --allow-unverified: said before anything else
        out += [
            f"> **Unverified**: proposed with `--allow-unverified`. {_cell('; '.join(evidence.reasons))}",
            "",
        ]
    out += [
        f"imgforge moves **{site.name}** to `{evidence.reference}` and applies the runtime settings the "
        "image was tested under, in one commit.",
        "",
        *rows,
        "",
        "#### Evidence",
        "",
    ]
    out += evidence_lines(evidence)
    out += [
        "",
        "#### Files",
        "",
        *[f"- `{f}`" for f in files],
        "",
        "<details><summary>Diff</summary>",
        "",
        "```diff",
        plan.diff.rstrip("\n"),
        "```",
        "",
        "</details>",
        "",
        "---",
        "Generated by imgforge. Running `imgforge pr` or `imgforge update` again refreshes this request "
        "instead of opening another; push your own commits to another branch, imgforge will not overwrite them."
        + (f" The commit carries `{gitbranch.SKIP_CI}` so this bot push starts no pipeline." if skip_ci else ""),
        site_marker(site),
    ]
    return "\n".join(out) + "\n"
