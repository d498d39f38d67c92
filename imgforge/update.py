"""``imgforge pr`` and ``imgforge update``: one reviewed merge/pull request per site, Renovate-style.

A worker above the libraries: it joins the catalog, the GitOps manager (plan, branch), the forge
(platform), the registry (datasource) and the evidence of a tested image.

``open_or_update_pr`` runs plan → branch → apply → commit → push → forge request. The order is
chosen so that a failure leaves nothing half done: the forge is asked for the site's open requests
*before* anything is pushed (a forge that is down or rejects the token fails first), the patch is
made on an exported copy of the default branch (the user's work tree is never touched), and a push
whose request cannot then be created or updated is undone. A site has at most one open request:
an existing one on the same branch is refreshed, and older ones (an earlier tag's branch, found by
the hidden site marker in their description) are closed as superseded once the new one exists.

``update_sites`` is the loop over sites: GitOps tag vs the registry's highest release.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgforge import gitops
from imgforge.config import Catalog, Site
from imgforge.errors import ForgeError, ForgeUnauthorized, ImgforgeError, Unverified
from imgforge.evidence import Evidence, collect_evidence
from imgforge.gitops import branch as gitbranch
from imgforge.gitops.policy import check_level
from imgforge.pr_body import branch_name, commit_message, request_body, site_marker, title

if TYPE_CHECKING:
    from imgforge.forge import Forge, OpenRequest
    from imgforge.gitops import GitopsPlan
    from imgforge.proof import VerifyingKey

# (site, tag to propose, tag deployed now) -> the evidence; tests hand in their own
EvidenceFn = Callable[[Site, str, str | None], Evidence]


def _evidence_fn(evidence: EvidenceFn | None, key: VerifyingKey | None) -> EvidenceFn:
    return evidence or partial(collect_evidence, key=key)


def check_verified(ev: Evidence, allow_unverified: bool) -> None:
    """Refuse to propose what does not verify, unless the caller said so (then the body says it)."""
    if ev.verified or allow_unverified:
        return
    at = f"@{ev.digest}" if ev.digest else ""
    raise Unverified(
        f"{ev.reference}{at} is not verified ({'; '.join(ev.reasons)}); not proposing it "
        "(--allow-unverified proposes it anyway, saying so at the top of the request)"
    )


def plan_deploy(
    catalog: Catalog, site: Site | str, repo: Path, *, tag: str | None, level: str, pin: bool | None
) -> GitopsPlan:
    """``imgforge gitops plan|apply``: the overlay change for ``site``, pinned to the registry's
    digest of the tag when ``pin`` (None: the catalog's ``pin_digest``) asks for it.

    With a verifying key configured (``IMGFORGE_SIGNING_KEY_PUB`` or ``[signing] public_key``) the
    digest is pinned only once it verifies, as ``pr``/``update`` do (else Unverified); without
    one it is pinned as the registry names it, unverified.
    """
    from imgforge import proof

    the_site = catalog.site(site) if isinstance(site, str) else site
    digest = None
    if catalog.settings.pin_digest if pin is None else pin:
        the_tag = tag or the_site.tag
        key = proof.verifying_key(None, catalog.public_key)
        if key is None:
            digest = proof.resolve_digest(f"{the_site.image}:{the_tag}")[2]
        else:
            ev = collect_evidence(the_site, the_tag, key=key)
            if not ev.verified:
                at = f"@{ev.digest}" if ev.digest else ""
                raise Unverified(
                    f"{ev.reference}{at} is not verified with {key.source} ({'; '.join(ev.reasons)}); "
                    "not pinning it (--no-pin-digest deploys the tag without a digest)"
                )
            digest = ev.digest
    return gitops.plan(catalog, the_site, repo, tag=tag, level=level, digest=digest)


def registry_versions(catalog: Catalog, site: Site) -> list[str]:
    """The semver tags of the site's repository in the registry, ascending (as ``imgforge tags``)."""
    from imgforge.registry import RegistryClient, Repository
    from imgforge.registry.versions import split

    repo = Repository.parse(site.image)
    with RegistryClient(repo.registry) as client:
        return [v.tag for v in split(client.list_tags(repo.name))[0]]


def pick_release(current: str | None, tags: list[str], allow_major: bool) -> tuple[str | None, str | None, str]:
    """(tag to move to or None, the highest release seen, status when there is nothing to do).

    Pre-releases and non-semver tags (``latest``, ``dev-<sha>``) never count. Without
    ``allow_major`` a higher major is reported and the highest release of the current major is
    proposed instead, as Renovate keeps majors in a request of their own.
    """
    from imgforge.registry.versions import highest_release, parse, split

    versions, _ = split(tags)
    best = highest_release(versions)
    have = parse(current or "")
    if best is None:
        return None, None, "no release"
    if have is None:
        return None, best.tag, "not semver"
    if best.semver.compare(have.semver) < 0:
        return None, best.tag, "ahead"
    if best.semver.major > have.semver.major and not allow_major:
        same = highest_release(v for v in versions if v.semver.major == have.semver.major)
        if same is None or same.semver.compare(have.semver) <= 0:
            return None, best.tag, "major"
        return same.tag, best.tag, ""
    if best.semver.compare(have.semver) == 0:
        return None, best.tag, "up to date"
    return best.tag, best.tag, ""


_QUIET = {
    "no release": "the registry has no semver release tag",
    "not semver": "the GitOps tag is not a semver version",
    "ahead": "GitOps runs a newer tag than the registry's highest release",
    "major": "a major update is available: pass --allow-major",
    "up to date": "GitOps runs the registry's highest release",
}


@dataclass
class PrResult:
    site: str
    tag: str
    branch: str
    base: str
    action: str  # created, updated, unchanged, up-to-date, dry-run
    base_commit: str = ""
    commit: str | None = None
    message: str = ""
    body: str = ""
    diff: str = ""
    payload: dict[str, Any] | None = None
    request: OpenRequest | None = None
    superseded: list[OpenRequest] = field(default_factory=list)
    pushed: bool = False
    warnings: list[str] = field(default_factory=list)
    evidence: Evidence | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "tag": self.tag,
            "branch": self.branch,
            "base": self.base,
            "base_commit": self.base_commit,
            "action": self.action,
            "commit": self.commit,
            "pushed": self.pushed,
            "message": self.message,
            "diff": self.diff,
            "body": self.body,
            "payload": self.payload,
            "request": self.request.to_dict() if self.request else None,
            "superseded": [r.to_dict() for r in self.superseded],
            "warnings": self.warnings,
            "evidence": self.evidence.to_dict() if self.evidence else None,
        }


def open_or_update_pr(
    catalog: Catalog,
    site: Site,
    repo: Path,
    *,
    forge: Forge | None,
    forge_class: type[Forge] | None = None,
    tag: str | None = None,
    level: str = "restricted",
    branch: str | None = None,
    remote: str = "origin",
    base_branch: str | None = None,
    dry_run: bool = False,
    skip_ci: bool = True,
    evidence: EvidenceFn | None = None,
    key: VerifyingKey | None = None,
    allow_unverified: bool = False,
    pin_digest: bool = False,
) -> PrResult:
    """Patch the site on its bot branch and open or refresh its request (see the module doc)."""
    tag = tag or site.tag
    branch = branch or branch_name(site, tag)
    git = gitbranch.open_repo(repo)
    if dry_run:
        target = gitbranch.offline_target(git, remote, branch, base_branch)
        site_requests: list[OpenRequest] = []
    else:
        if forge is None:
            raise ForgeError("no forge to open the request on (only --dry-run works without one)")
        gitbranch.require_clean(git)
        # read first: a forge that is down or rejects the token fails before anything is pushed
        site_requests = [r for r in forge.open_requests() if r.source_branch == branch or site_marker(site) in r.body]
        target = gitbranch.prepare(git, remote, branch, base_branch)
    result = PrResult(site.name, tag, branch, target.default, "up-to-date", target.base)
    with tempfile.TemporaryDirectory(prefix="imgforge-pr-") as tmp:
        root = Path(tmp)
        gitbranch.export_tree(git, target.base, root)
        pinned = None
        if pin_digest:  # the verified digest is what gets pinned: evidence first
            result.evidence = _evidence_fn(evidence, key)(site, tag, gitops.current_tag(catalog, site, root))
            check_verified(result.evidence, allow_unverified)
            if result.evidence.digest is None:
                raise Unverified(
                    f"{result.evidence.reference}: no registry digest to pin ({'; '.join(result.evidence.reasons)})"
                )
            pinned = result.evidence.digest
        plan = gitops.plan(catalog, site, root, tag=tag, level=level, digest=pinned)
        if plan.noop:
            return result
        written = gitops.apply(plan)
        if not written:
            return result
        files = sorted(gitbranch.relative(root, p) for p in written)
        result.diff = plan.diff
        result.message = commit_message(site, plan, skip_ci=skip_ci)
        if result.evidence is None:
            result.evidence = _evidence_fn(evidence, key)(site, tag, plan.old_tag)
            check_verified(result.evidence, allow_unverified)
        result.body = request_body(site, plan, result.evidence, files, skip_ci=skip_ci)
        from imgforge.forge import RequestSpec

        spec = RequestSpec(branch, target.default, title(site, tag), result.body)
        cls = type(forge) if forge is not None else forge_class
        result.payload = cls.create_payload(spec) if cls else {"title": spec.title, "body": spec.body}
        if dry_run:
            result.action = "dry-run"
            return result
        commit, tree = gitbranch.commit_files(target, root, written, result.message)
    if forge is None:  # checked at the start: only a dry run goes without a forge
        raise ForgeError("no forge to open the request on (only --dry-run works without one)")
    result.commit = commit
    if gitbranch.is_current(target, tree, result.message):
        result.commit = target.existing
    else:
        gitbranch.push(target, commit)
        result.pushed = True
    existing = next((r for r in site_requests if r.source_branch == branch), None)
    try:
        request, result.action = forge.open_or_update(spec, existing)
        if result.pushed and result.action == "unchanged":
            result.action = "updated"  # same description, new commit (rebuilt on a newer default branch)
    except BaseException as e:
        if result.pushed:
            _undo(target, commit, e)
        raise
    result.request = request
    for old in site_requests:
        if old.source_branch != branch and old.number != request.number:
            try:
                result.superseded.append(forge.close_request(old))
            except ImgforgeError as e:
                result.warnings.append(f"could not close superseded request {old.url or old.number}: {e}")
    return result


def _undo(target: gitbranch.Target, pushed: str, error: BaseException) -> None:
    """Put the remote branch back; if even that fails, say so in the original error."""
    try:
        gitbranch.undo_push(target, pushed)
    except ImgforgeError as undo:
        if isinstance(error, ImgforgeError):
            error.message += f" (and undoing the push of {target.branch!r} failed: {undo}; delete it by hand)"


@dataclass
class UpdateRow:
    site: str
    current: str | None = None
    latest: str | None = None  # the registry's highest release
    target: str | None = None  # the tag a request was opened for (the latest, or the highest of the major)
    status: str = ""  # created, updated, unchanged, up-to-date, up to date, ahead, major, no release, not semver, error
    detail: str = ""
    url: str = ""
    error: ImgforgeError | None = None
    evidence: Evidence | None = None  # the target's verification (update --dry-run)

    def to_dict(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "current": self.current,
            "latest": self.latest,
            "target": self.target,
            "status": self.status,
            "detail": self.detail,
            "url": self.url,
            "verification": self.evidence.to_dict() if self.evidence else None,
        }


def lookup_sites(
    catalog: Catalog,
    names: Iterable[str],
    repo: Path,
    *,
    allow_major: bool = False,
    key: VerifyingKey | None = None,
    releases: Callable[[Catalog, Site], list[str]] = registry_versions,
    evidence: EvidenceFn | None = None,
    jobs: int = 8,
) -> list[UpdateRow]:
    """``update --dry-run``: current, latest, target and the target's verification for each site.

    Renovate's lookup alone: the GitOps work tree is read as it is (one kustomize run for all
    sites), the registries are asked (sites in parallel), and nothing else is touched: no forge,
    no git remote, no branch, no file.
    """
    sites = [catalog.site(n) for n in names]
    find = _evidence_fn(evidence, key)
    if not sites:
        return []
    pool = ThreadPoolExecutor(max(1, min(jobs, len(sites))) + 1)
    current = pool.submit(gitops.current_tags, catalog, sites, repo)  # kubectl runs while registries answer
    listed = {s.name: pool.submit(releases, catalog, s) for s in sites}

    def one(site: Site) -> UpdateRow:
        row = UpdateRow(site.name)
        try:
            tag = current.result()[site.name]
            if isinstance(tag, ImgforgeError):
                raise tag
            row.current = tag
            row.target, row.latest, row.status = pick_release(tag, listed[site.name].result(), allow_major)
            row.detail = _QUIET.get(row.status, "")
            if row.target is not None:
                row.evidence = find(site, row.target, row.current)
                row.status = "would propose" if row.evidence.verified else "unverified"
                row.detail = (
                    f"{row.evidence.digest} verified with key sha256:{(row.evidence.key_fingerprint or '')[:16]}…"
                    if row.evidence.verified
                    else "; ".join(row.evidence.reasons)
                )
        except ImgforgeError as e:
            row.status, row.detail, row.error = "error", str(e), e
        return row

    with pool:
        return list(pool.map(one, sites))


def update_sites(
    catalog: Catalog,
    names: Iterable[str],
    repo: Path,
    *,
    forge: Callable[[], Forge],
    allow_major: bool = False,
    remote: str = "origin",
    base_branch: str | None = None,
    level: str = "restricted",
    skip_ci: bool = True,
    releases: Callable[[Catalog, Site], list[str]] = registry_versions,
    evidence: EvidenceFn | None = None,
    key: VerifyingKey | None = None,
    allow_unverified: bool = False,
    pin_digest: bool = False,
) -> list[UpdateRow]:
    """For each site: the GitOps tag vs the registry's highest release; open or refresh where behind.

    ``forge`` is called only when a request is needed (and once), so a run where every site is up
    to date needs no token. One site's failure is reported in its row and the loop goes on; a
    rejected token stops the loop, as it would fail every remaining site the same way.
    """
    check_level(level)  # before any network call: a typo must not wait for the remote
    sites = [catalog.site(n) for n in names]
    git = gitbranch.open_repo(repo)
    gitbranch.require_clean(git)
    default, base = gitbranch.fetch_default(git, remote, base_branch)
    connected: list[Forge] = []

    def the_forge() -> Forge:
        if not connected:
            connected.append(forge())
        return connected[0]

    rows = []
    with tempfile.TemporaryDirectory(prefix="imgforge-update-") as tmp:
        gitbranch.export_tree(git, base, Path(tmp))  # the tags the default branch deploys now
        for site in sites:
            row = UpdateRow(site.name)
            rows.append(row)
            try:
                row.current = gitops.current_tag(catalog, site, Path(tmp))
                row.target, row.latest, row.status = pick_release(row.current, releases(catalog, site), allow_major)
                row.detail = _QUIET.get(row.status, "")
                if row.target is None:
                    continue
                result = open_or_update_pr(
                    catalog,
                    site,
                    repo,
                    forge=the_forge(),
                    tag=row.target,
                    level=level,
                    remote=remote,
                    base_branch=default,
                    skip_ci=skip_ci,
                    evidence=_evidence_fn(evidence, key),
                    allow_unverified=allow_unverified,
                    pin_digest=pin_digest,
                )
                row.status, row.url = result.action, result.request.url if result.request else ""
                notes = [result.branch] if result.request else []
                if row.target != row.latest:
                    notes.append(f"{row.target}; major {row.latest} needs --allow-major")
                if result.superseded:
                    notes.append(f"closed {len(result.superseded)} superseded request(s)")
                row.detail = "; ".join(notes + result.warnings)
            except ImgforgeError as e:
                # a rejected token, or no forge at all (no token, unknown URL), fails every site alike
                if isinstance(e, ForgeUnauthorized) or (isinstance(e, ForgeError) and not connected):
                    raise
                row.status, row.detail, row.error = ("unverified" if isinstance(e, Unverified) else "error"), str(e), e
    return rows
