"""Which sites CI must build, and the same answer written for GitHub Actions, GitLab CI or people.

A site's image depends on its TOML file, on ``templates/`` and ``imgforge.toml`` (shared by every
site), and on its content: a local folder in the catalog's repository, or a git source at a ref.
With ``changed_since`` only sites whose inputs differ from that revision are listed; without it,
all of them. Local inputs are compared with one ``git diff`` over the whole tree, never once per
site, so the answer stays fast for hundreds of sites. Git sources live elsewhere: they are
resolved with ``git ls-remote`` (once per URL, in parallel), and a source that cannot be reached
or whose content folder is missing is reported with the reason instead of being dropped.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from imgforge import _git as _gitrun
from imgforge._resources import read_template
from imgforge.config import CATALOG_FILE, Catalog, Site
from imgforge.content import cache_dir, unavailable_reason
from imgforge.errors import GitError, GitNotFound, ImgforgeError, UsageError

TEMPLATES_DIR = "templates"
GITLAB_SITE_JOB_TEMPLATE = "gitlab-site-job.yml"
_GIT_TIMEOUT = 60  # seconds for one ls-remote or one-commit fetch; a hung forge must not hang CI
_FULL_SHA = _gitrun.FULL_COMMIT

__all__ = ["Entry", "MatrixResult", "Problem", "sites_to_build"]


@dataclass(frozen=True)
class Entry:
    """One site CI builds: the image it produces and, for humans, why it is in the list."""

    site: str
    image: str
    reason: str
    base: str
    revision: str | None = None  # commit of a git source, when resolved
    builder: str = "docker"  # the site's builder: CI gives oci sites an unprivileged candidate job


@dataclass(frozen=True)
class Problem:
    """A site that cannot be built or checked. ``blocking``: it was due for a build, so CI fails."""

    site: str
    image: str
    kind: str  # "unavailable" (nothing to build from) or "unreachable" (git source not answering)
    reason: str
    blocking: bool


@dataclass(frozen=True)
class MatrixResult:
    entries: tuple[Entry, ...]
    problems: tuple[Problem, ...] = ()
    changed_since: str | None = None
    base_commit: str | None = None  # the merge base the comparison was made against
    changed_paths: int = 0  # files changed in the compared range

    def to_dict(self) -> dict[str, Any]:
        return {
            "changed_since": self.changed_since,
            "base_commit": self.base_commit,
            "changed_paths": self.changed_paths,
            "sites": [asdict(e) for e in self.entries],
            "problems": [asdict(p) for p in self.problems],
        }


@dataclass(frozen=True)
class _Remote:
    """What ``git ls-remote`` said about one URL: its refs, or why it could not be asked."""

    refs: dict[str, str]
    error: str | None = None


def sites_to_build(
    catalog: Catalog, changed_since: str | None, repo_dir: str | os.PathLike[str] | None = None
) -> MatrixResult:
    """The sites whose inputs changed since ``changed_since`` (all sites when it is None)."""
    diff = _Diff.since(Path(repo_dir or catalog.root), changed_since) if changed_since else None
    remotes = _ls_remotes({s.source.git for s in catalog.sites.values() if s.source and s.source.git})
    entries: list[Entry] = []
    problems: list[Problem] = []
    pending_git: list[tuple[Site, str, str, str]] = []  # (site, url, ref, commit): did the remote ref move?
    for site in catalog.sites.values():
        base = catalog.profile(site).base_image
        local = "no --changed-since: every site is built" if diff is None else diff.local_reason(catalog, site)
        if missing := unavailable_reason(catalog, site):
            problems.append(Problem(site.name, site.reference, "unavailable", missing, blocking=bool(local)))
            continue
        src = site.source
        assert src is not None
        revision = None
        if src.git:
            remote = remotes[src.git]
            if remote.error or (revision := _resolve_ref(remote.refs, src.ref)) is None:
                why = remote.error or f"ref {src.ref!r} not found"
                problems.append(
                    Problem(
                        site.name,
                        site.reference,
                        "unreachable",
                        f"{site.file}: source: {_gitrun.redact(src.git)}: {why}",
                        blocking=bool(local),
                    )
                )
                continue
            if not local and diff is not None and not _FULL_SHA.fullmatch(src.ref):
                pending_git.append((site, src.git, src.ref, revision))
                continue
        if local:
            entries.append(Entry(site.name, site.reference, local, base, revision, site.builder))
    if diff is not None and pending_git:
        moved = _moved_since(pending_git, diff.base_time)
        for site, _, _, revision in pending_git:
            if reason := moved.get(site.name):
                entries.append(
                    Entry(site.name, site.reference, reason, catalog.profile(site).base_image, revision, site.builder)
                )
    order = {name: i for i, name in enumerate(catalog.sites)}
    entries.sort(key=lambda e: order[e.site])
    return MatrixResult(
        tuple(entries), tuple(problems), changed_since, diff.base if diff else None, len(diff.files) if diff else 0
    )


# --- local inputs: one diff over the whole tree -------------------------------------------------


@dataclass(frozen=True)
class _Diff:
    """Every path changed between the merge base of REF and HEAD, indexed once for O(1) lookups."""

    top: Path  # the git work tree's top folder; diff paths are relative to it
    base: str
    base_time: int
    files: frozenset[str]
    dirs: frozenset[str]  # every folder that holds a changed path, at any depth

    @classmethod
    def since(cls, repo: Path, ref: str) -> _Diff:
        top = Path(_git_local(repo, "rev-parse", "--show-toplevel"))
        try:
            base = _git_local(repo, "merge-base", operands=(ref, "HEAD"))
        except GitError as e:
            why = (
                f"unknown revision in {top} ({e.detail})"
                if e.returncode != 1
                else f"no common history with HEAD in {top}; a shallow clone? (CI: fetch-depth 0 / GIT_DEPTH 0)"
            )
            raise UsageError(f"--changed-since {ref}: {why}") from e
        base_time = int(_git_local(repo, "show", "-s", "--format=%ct", operands=(base,)))
        # Commits only (REF...HEAD), like CI sees them: an uncommitted edit changes nothing here.
        # No rename detection: a file moved between two sites' folders changes both sites.
        out = _git_local(repo, "diff", "--name-only", "--no-renames", "-z", base, "HEAD", "--", strip=False)
        files = frozenset(p for p in out.split("\0") if p)
        dirs: set[str] = set()
        for path in files:
            parent = posixpath.dirname(path)
            while parent and parent not in dirs:
                dirs.add(parent)
                parent = posixpath.dirname(parent)
        return cls(top, base, base_time, files, frozenset(dirs))

    def _rel(self, path: Path) -> str | None:
        """``path`` relative to the work tree's top, or None when it lies outside the repository."""
        rel = os.path.relpath(os.path.realpath(path), os.path.realpath(self.top))
        return None if rel == ".." or rel.startswith("../") or os.path.isabs(rel) else Path(rel).as_posix()

    def touched(self, path: Path) -> bool | None:
        rel = self._rel(path)
        if rel is None:
            return None
        return (rel == "." and bool(self.files)) or rel in self.files or rel in self.dirs

    def local_reason(self, catalog: Catalog, site: Site) -> str | None:
        """Why the site must be rebuilt because of a file in this repository, or None."""
        root = catalog.root
        for shared, what in ((root / CATALOG_FILE, CATALOG_FILE), (root / TEMPLATES_DIR, f"{TEMPLATES_DIR}/")):
            if self.touched(shared):
                return f"{what} changed (affects every site)"
        if self.touched(catalog.site_path(site)):
            return f"{site.file} changed"
        src = site.source
        if src is not None and src.path is not None:
            folder = root / src.path / src.content_dir
            changed = self.touched(folder)
            if changed is None:
                return f"content folder {folder} is outside the repository: changes cannot be seen, always built"
            if changed:
                return f"content {posixpath.join(src.path, src.content_dir)}/ changed"
        return None


def _git(
    args: list[str], cwd: Path | None = None, *, operands: list[str] | tuple[str, ...] = (), strip: bool = True
) -> str:
    try:
        return _gitrun.out(*args, cwd=cwd, operands=operands, timeout=_GIT_TIMEOUT, strip=strip)
    except GitNotFound as e:
        raise ImgforgeError("git is not installed; `imgforge matrix` needs it") from e


def _git_local(repo: Path, *args: str, operands: tuple[str, ...] = (), strip: bool = True) -> str:
    """git in the catalog's repository, where a failure is the user's to fix (bad ref, no repo)."""
    try:
        return _git(list(args), cwd=repo, operands=operands, strip=strip)
    except GitError as e:
        if args[0] == "merge-base" or isinstance(e, GitNotFound):
            raise
        raise UsageError(f"git {args[0]} in {repo}: {e.detail}") from e


# --- git sources: resolved remotely, fetched only as far as one commit's date -------------------


def _ls_remotes(urls: set[str]) -> dict[str, _Remote]:
    """``git ls-remote`` once per URL, all URLs at once: the wait is one round trip, not N."""
    if not urls:
        return {}
    with ThreadPoolExecutor(max_workers=min(16, len(urls))) as pool:
        return dict(zip(sorted(urls), pool.map(_ls_remote, sorted(urls)), strict=True))


def _ls_remote(url: str) -> _Remote:
    try:
        out = _git(["ls-remote"], operands=[_gitrun.Url(url)])
    except GitError as e:
        return _Remote({}, f"cannot reach the repository: {e.detail}")
    refs: dict[str, str] = {}
    for line in out.splitlines():
        sha, _, name = line.partition("\t")
        refs[name] = sha
    return _Remote(refs)


def _resolve_ref(refs: dict[str, str], ref: str) -> str | None:
    """The commit a site's ``ref`` names: a branch, a tag (peeled), a full ref name or a commit."""
    if _FULL_SHA.fullmatch(ref):
        return ref  # pinned: the catalog file itself records every change of it
    for name in (f"refs/heads/{ref}", f"refs/tags/{ref}^{{}}", f"refs/tags/{ref}", ref, f"{ref}^{{}}"):
        if name in refs:
            return refs[name]
    return None


def _moved_since(pending: list[tuple[Site, str, str, str]], since: int) -> dict[str, str]:
    """Sites whose resolved git commit was committed after ``since`` (the merge base's time).

    git cannot say where a branch pointed in the past, so the commit's own date stands in for it:
    a commit made after the base means content the catalog has not been built with. Only commit
    objects are fetched (depth 1, no trees), into a probe repository kept in the cache.
    """
    by_url: dict[str, list[str]] = {}
    for _, url, _, revision in pending:
        by_url.setdefault(url, []).append(revision)
    with ThreadPoolExecutor(max_workers=min(8, len(by_url))) as pool:
        dates = dict(zip(by_url, pool.map(_commit_dates, by_url, by_url.values()), strict=True))
    moved: dict[str, str] = {}
    for site, url, ref, revision in pending:
        where = f"git source {_gitrun.redact(url)}@{ref}"
        when = dates[url].get(revision)
        if when is None:
            moved[site.name] = f"{where} at {revision[:8]}: commit date unknown, built to be safe"
        elif when > since:
            moved[site.name] = f"{where} moved to {revision[:8]}"
    return moved


def _commit_dates(url: str, revisions: list[str]) -> dict[str, int]:
    """Commit time of each revision of ``url``; {} when it cannot be fetched (then: build)."""
    probe = cache_dir() / "matrix-probe" / (hashlib.sha256(url.encode()).hexdigest()[:16] + ".git")
    wanted = [r for r in dict.fromkeys(revisions) if _FULL_SHA.fullmatch(r)]  # never an option to git
    if not wanted:
        return {}
    try:
        if not (probe / "HEAD").exists():
            probe.mkdir(parents=True, exist_ok=True)
            _git(["init", "--bare", "-q"], operands=[str(probe)])
            for key, value in (
                ("remote.origin.url", _gitrun.Url(url)),
                ("remote.origin.promisor", "true"),
                ("extensions.partialClone", "origin"),
            ):
                _git(["config"], cwd=probe, operands=[key, value])
        # Which commits are here already, from our own refs: asking for a missing object in a
        # partial clone would make git fetch it lazily, one round trip each.
        have = set(_git(["for-each-ref", "--format=%(refname:lstrip=2)", "refs/probe/"], cwd=probe).split())
        if missing := [r for r in wanted if r not in have]:
            _git(
                ["fetch", "-q", "--depth=1", "--filter=tree:0", "--no-tags"],
                cwd=probe,
                operands=["origin", *[f"+{r}:refs/probe/{r}" for r in missing]],
            )
        out = _git(["show", "-s", "--format=%H %ct"], cwd=probe, operands=wanted)
    except (GitError, OSError):
        return {}
    return {sha: int(ts) for sha, _, ts in (line.partition(" ") for line in out.splitlines())}


# --- output formats -----------------------------------------------------------------------------


def format_json(result: MatrixResult) -> str:
    return json.dumps(result.to_dict(), indent=2) + "\n"


def github_matrix(result: MatrixResult) -> dict[str, Any]:
    """``strategy.matrix`` for the per-site job; a blocking problem becomes a job that fails."""
    include: list[dict[str, Any]] = [
        {"site": e.site, "image": e.image, "base": e.base, "builder": e.builder} for e in result.entries
    ]
    include += [
        {"site": p.site, "image": p.image, "base": "", "builder": "", "problem": p.reason}
        for p in result.problems
        if p.blocking
    ]
    return {"include": include}


def format_github(result: MatrixResult, output_file: str | None = None) -> str:
    """The matrix JSON; with ``$GITHUB_OUTPUT`` also the step outputs ``matrix``, ``count``, ``problems``."""
    data = github_matrix(result)
    matrix = json.dumps(data, separators=(",", ":"))
    if output_file:
        warnings = [f"{p.site}: {p.reason}" for p in result.problems if not p.blocking]
        try:
            with open(output_file, "a", encoding="utf-8") as fh:
                fh.write(
                    f"matrix={matrix}\ncount={len(data['include'])}\n"
                    f"problems={json.dumps(warnings, separators=(',', ':'))}\n"
                )
        except OSError as e:
            raise UsageError(f"GITHUB_OUTPUT={output_file}: cannot append the step outputs: {e.strerror}") from e
    return matrix + "\n"


def gitlab_site_job() -> str:
    """The per-site job every site of the child pipeline extends (templates/gitlab-site-job.yml)."""
    return read_template(GITLAB_SITE_JOB_TEMPLATE)


def _yaml_str(text: str) -> str:
    """A double-quoted YAML scalar; JSON string escapes are valid YAML, so json.dumps is exact."""
    return json.dumps(text, ensure_ascii=False)


def _echo(text: str, err: bool = False) -> str:
    """A script line printing ``text`` verbatim: shell-quoted (no $ or glob expansion), then YAML-quoted."""
    quoted = "'" + text.replace("'", "'\\''") + "'"
    return _yaml_str(f"echo {quoted}" + (" >&2" if err else ""))


def _has_candidate(entry: Entry) -> bool:
    """An oci site on a registry base, pushing to a registry CI can reach, gets a candidate job."""
    local_image = entry.image.startswith(("127.0.0.1:", "localhost:"))
    return entry.builder == "oci" and not entry.base.startswith("imgforge/") and not local_image


def format_gitlab(result: MatrixResult) -> str:
    """A child pipeline: one job per site, one per problem, or one no-op job when nothing changed.

    GitLab rejects a child pipeline without jobs, so an empty change set still yields a valid file.
    """
    since = f" since {result.changed_since} ({result.base_commit[:8]})" if result.base_commit else ""
    lines = [
        f"# Generated by `imgforge matrix --format gitlab`{since}: {len(result.entries)} site(s) to build,",
        f"# {len(result.problems)} problem(s). Do not edit: CI writes it on every pipeline.",
        "stages: [candidate, build]",
        "",
    ]
    if result.entries:
        lines.append(gitlab_site_job())
    for e in result.entries:
        variables = [
            "  variables:",
            f"    SITE: {_yaml_str(e.site)}",
            f"    IMAGE: {_yaml_str(e.image)}",
            f"    BASE: {_yaml_str(e.base)}",
            f"    BUILD_REASON: {_yaml_str(e.reason)}",
        ]
        candidate = _has_candidate(e)
        if candidate:
            lines += [f"{_yaml_str('candidate:' + e.site)}:", "  extends: .imgforge-candidate", *variables, ""]
        lines += [f"{_yaml_str('site:' + e.site)}:", "  extends: .imgforge-site", *variables]
        lines += ['    CANDIDATE: "1"', ""] if candidate else [""]
    blocking = [p for p in result.problems if p.blocking]
    for p in blocking:  # due for a build but cannot be built: that site's job fails
        lines += [
            f"{_yaml_str('problem:' + p.site)}:",
            "  stage: build",
            "  variables:",
            "    GIT_STRATEGY: none",
            "  script:",
            f"    - {_echo(p.site + ': ' + p.reason, err=True)}",
            "    - exit 1",
            "",
        ]
    if warnings := [p for p in result.problems if not p.blocking]:  # one amber job, not one per site
        lines += ["problems:", "  stage: build", "  variables:", "    GIT_STRATEGY: none", "  script:"]
        lines += [f"    - {_echo(p.site + ': ' + p.reason, err=True)}" for p in warnings]
        lines += ["    - exit 1", "  allow_failure: true", ""]
    if not result.entries and not result.problems:
        lines += [
            "nothing-to-do:",
            "  stage: build",
            "  variables:",
            "    GIT_STRATEGY: none",
            "  script:",
            f"    - {_echo(f'no site inputs changed{since}: nothing to build')}",
            "",
        ]
    return "\n".join(lines).rstrip("\n") + "\n"
