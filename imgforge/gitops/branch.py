"""Git work for ``imgforge pr``: build the bot commit and push it without touching the work tree.

The branch is built with git plumbing from the remote's default branch: the tree is exported to a
temporary folder, patched there, and committed through a temporary index (``read-tree``,
``update-index``, ``write-tree``, ``commit-tree``), then pushed as ``<sha>:refs/heads/<branch>``.
The user's work tree, index, HEAD and local branches are never changed, so "restore the work tree
and the original branch" holds on every failure by construction; a failed push leaves only
unreachable objects behind, which ``git gc`` drops.

A branch that already exists on the remote is reused only when every commit on it (since the
default branch) carries imgforge's ``Generated-By: imgforge`` trailer; then it is rebuilt from the
current default branch and force-pushed with a lease, as Renovate rebases its own branches.
Anything else on it is someone's work: ``ForeignCommits`` stops before anything is written.
"""

from __future__ import annotations

import os
import re
import subprocess
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgforge import _git as _gitrun
from imgforge.errors import DirtyWorkTree, ForeignCommits, GitError, GitNotFound, GitopsError, GitTimeout

TRAILER_KEY = "Generated-By"
TRAILER = f"{TRAILER_KEY}: imgforge"
# GitLab, GitHub Actions, Gitea/Forgejo Actions and Woodpecker all skip pipelines for a push whose
# head commit message contains "[skip ci]"; a bot commit must not start a CI run that pushes again.
SKIP_CI = "[skip ci]"


def scrub(text: str) -> str:
    """Git output without credentials embedded in URLs (``https://user:token@host``)."""
    return _gitrun.redact(text)


class Git:
    """``git`` in one repository; every failure becomes a ``GitopsError`` naming the command.

    Values that come from the command line or a remote (remote and branch names) are passed as
    ``operands``: the runner puts them after ``--end-of-options``, where git cannot take them for
    an option.
    """

    def __init__(self, repo: Path):
        self.repo = Path(repo)

    def run(
        self,
        *args: str,
        operands: Sequence[str] = (),
        env: dict[str, str] | None = None,
        network: bool = False,
        input: bytes | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        try:
            proc = _gitrun.run(
                *args, cwd=self.repo, operands=operands, env=env, network=network, input=input, check=False
            )
        except GitNotFound as e:
            raise GitopsError("git is not installed (needed for imgforge pr)") from e
        except GitTimeout as e:
            limit = _gitrun.NETWORK_TIMEOUT if network else _gitrun.LOCAL_TIMEOUT
            raise GitopsError(f"git {args[0]} in {self.repo} did not finish within {limit:g}s") from e
        except GitError as e:
            raise GitopsError(f"git {args[0]} in {self.repo}: {e.detail}") from e
        if check and proc.returncode != 0:
            raise GitopsError(f"git {args[0]} failed in {self.repo}: {self.tail(proc.stderr)}")
        return proc

    def out(self, *args: str, **kwargs: Any) -> str:
        return self.run(*args, **kwargs).stdout.decode("utf-8", "replace").strip()

    @staticmethod
    def tail(stderr: bytes, lines: int = 6) -> str:
        return _gitrun.tail(stderr, lines)


@dataclass
class Target:
    """Where the bot branch goes: remote, its default branch and the commits involved."""

    git: Git
    remote: str
    remote_url: str  # as configured; show only through scrub()
    default: str
    base: str  # commit of the default branch the new branch starts from
    branch: str
    existing: str | None  # current commit of the branch on the remote, if it exists


def open_repo(repo: Path) -> Git:
    git = Git(repo)
    if not Path(repo).is_dir():
        raise GitopsError(f"GitOps repo {repo} does not exist")
    proc = git.run("rev-parse", "--is-inside-work-tree", check=False)
    if proc.returncode != 0 or proc.stdout.strip() != b"true":
        raise GitopsError(f"{repo} is not a git work tree (imgforge pr needs a clone with a remote)")
    return git


def require_clean(git: Git) -> None:
    """Refuse a work tree with changes to tracked files (untracked files are left alone)."""
    lines = git.run("status", "--porcelain", "--untracked-files=no").stdout.decode("utf-8", "replace").splitlines()
    if lines:
        raise DirtyWorkTree(git.repo, [line[3:] for line in lines])


def remote_url(git: Git, remote: str) -> str:
    proc = git.run("remote", "get-url", operands=[remote], check=False)
    if proc.returncode != 0:
        known = git.out("remote").split() or ["none"]
        raise GitopsError(f"{git.repo} has no remote {remote!r} (remotes: {', '.join(known)}); pass --remote")
    return proc.stdout.decode().strip()


def default_branch(git: Git, remote: str, *, offline: bool = False) -> str:
    """The remote's HEAD branch (``ls-remote --symref``), else the remote-tracking HEAD."""
    if not offline:
        listing = git.out("ls-remote", "--symref", operands=[remote, "HEAD"], network=True)
        match = re.search(r"^ref: refs/heads/(\S+)\s+HEAD$", listing, re.M)
        if match:
            return match.group(1)
    proc = git.run("symbolic-ref", "--short", operands=[f"refs/remotes/{remote}/HEAD"], check=False)
    if proc.returncode == 0:
        return proc.stdout.decode().strip().split("/", 1)[1]
    for name in ("main", "master"):
        if (
            git.run(
                "rev-parse", "--verify", "--quiet", operands=[f"refs/remotes/{remote}/{name}"], check=False
            ).returncode
            == 0
        ):
            return name
    raise GitopsError(f"cannot tell the default branch of {remote!r}; pass --base")


def remote_branch(git: Git, remote: str, branch: str) -> str | None:
    """The commit ``branch`` points to on the remote right now (read-only ``ls-remote``)."""
    listing = git.out("ls-remote", operands=[remote, f"refs/heads/{branch}"], network=True)
    return listing.split()[0] if listing else None


def fetch_default(git: Git, remote: str, base_branch: str | None = None, *extra: str) -> tuple[str, str]:
    """Fetch the default branch (plus ``extra`` refspecs); returns (its name, its commit)."""
    url = remote_url(git, remote)
    default = base_branch or default_branch(git, remote)
    refs = [f"+refs/heads/{default}:refs/remotes/{remote}/{default}", *extra]
    proc = git.run("fetch", "--no-tags", "--quiet", operands=[remote, *refs], network=True, check=False)
    if proc.returncode != 0:
        raise GitopsError(f"cannot fetch {default!r} from {remote!r} ({scrub(url)}): {Git.tail(proc.stderr)}")
    return default, git.out("rev-parse", "--verify", operands=[f"refs/remotes/{remote}/{default}^{{commit}}"])


def prepare(git: Git, remote: str, branch: str, base_branch: str | None = None) -> Target:
    """Fetch the default branch (and the bot branch when it exists) and check who wrote the latter."""
    url = remote_url(git, remote)
    existing = remote_branch(git, remote, branch)
    extra = [f"+refs/heads/{branch}:refs/remotes/{remote}/{branch}"] if existing else []
    default, base = fetch_default(git, remote, base_branch, *extra)
    target = Target(git, remote, url, default, base, branch, existing)
    if existing:
        foreign = foreign_commits(git, base, existing)
        if foreign:
            raise ForeignCommits(branch, remote, foreign)
    return target


def offline_target(git: Git, remote: str, branch: str, base_branch: str | None = None) -> Target:
    """Like ``prepare`` but without fetching (``--dry-run``): the last fetched default branch."""
    url = remote_url(git, remote)
    default = base_branch or default_branch(git, remote, offline=True)
    for ref in (f"refs/remotes/{remote}/{default}", f"refs/heads/{default}"):
        proc = git.run("rev-parse", "--verify", "--quiet", operands=[f"{ref}^{{commit}}"], check=False)
        if proc.returncode == 0:
            return Target(git, remote, url, default, proc.stdout.decode().strip(), branch, None)
    raise GitopsError(f"no local copy of {remote}/{default}; run `git fetch {remote}` first")


def foreign_commits(git: Git, base: str, tip: str) -> list[tuple[str, str, str]]:
    """Commits on ``tip`` since ``base`` without imgforge's trailer: (sha, author, subject)."""
    fmt = f"%H%x00%an%x00%s%x00%(trailers:key={TRAILER_KEY},valueonly)%x1e"
    listing = git.out("log", f"--format={fmt}", operands=[f"{base}..{tip}"])
    foreign = []
    for record in filter(None, (r.strip("\n") for r in listing.split("\x1e"))):
        sha, author, subject, trailers = (record.split("\x00") + [""] * 4)[:4]
        if "imgforge" not in trailers.split():
            foreign.append((sha, author, subject))
    return foreign


def export_tree(git: Git, rev: str, dest: Path) -> None:
    """Write the tracked files of ``rev`` into ``dest`` (``git archive``; the work tree is not used)."""
    with tempfile.TemporaryFile() as archive:
        proc = git.run("archive", "--format=tar", operands=[rev])
        archive.write(proc.stdout)
        archive.seek(0)
        with tarfile.open(fileobj=archive) as tar:
            tar.extractall(dest, filter="data")


def commit_files(target: Target, root: Path, paths: list[Path], message: str) -> tuple[str, str]:
    """Commit ``paths`` (under ``root``, the exported tree; absolute or relative) on ``target.base``.

    Returns ``(commit, tree)``. Works through a temporary index, so the repo's own index and work
    tree are untouched. Paths that no longer exist under ``root`` are removed from the tree.
    """
    git = target.git
    with tempfile.TemporaryDirectory(prefix="imgforge-index-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        git.run("read-tree", target.base, env=env)
        for path in paths:
            rel = relative(root, path)
            if (Path(root) / rel).is_file():
                blob = git.out("hash-object", "-w", f"--path={rel}", "--stdin", input=(Path(root) / rel).read_bytes())
                mode = _mode(git, target.base, rel)
                git.run("update-index", "--add", "--cacheinfo", f"{mode},{blob},{rel}", env=env)
            else:
                git.run("update-index", "--force-remove", "--", rel, env=env)
        tree = git.out("write-tree", env=env)
    commit = git.out(
        "commit-tree", tree, "-p", target.base, "-F", "-", env=_identity(git), input=message.encode("utf-8")
    )
    return commit, tree


def relative(root: Path, path: Path) -> str:
    """``path`` (absolute, or relative to ``root``) as a POSIX path relative to ``root``."""
    path = Path(path)
    if not path.is_absolute():
        return path.as_posix()
    return path.resolve().relative_to(Path(root).resolve()).as_posix()


def tree_of(git: Git, rev: str) -> str:
    return git.out("rev-parse", "--verify", operands=[f"{rev}^{{tree}}"])


def is_current(target: Target, tree: str, message: str) -> bool:
    """Whether the remote branch already holds exactly this commit's content on the current base.

    Compared by tree, parent and message (a new commit would differ only in its timestamp), so a
    second run pushes nothing and the request's pipeline is not restarted for no change.
    """
    if not target.existing:
        return False
    parents = target.git.out("rev-list", "--parents", "-n", "1", operands=[target.existing]).split()[1:]
    if parents != [target.base] or tree_of(target.git, target.existing) != tree:
        return False
    return target.git.out("log", "-1", "--format=%B", operands=[target.existing]).strip() == message.strip()


def push(target: Target, commit: str) -> None:
    """Point the remote branch at ``commit``, only if it is still where we saw it (lease)."""
    _push(target, f"{commit}:refs/heads/{target.branch}", target.existing or "", verify=True)


def undo_push(target: Target, pushed: str) -> None:
    """Put the remote branch back as it was before ``push`` (deleted, or its old commit)."""
    source = target.existing or ""
    _push(target, f"{source}:refs/heads/{target.branch}", pushed, verify=False)


def _push(target: Target, refspec: str, expect: str, *, verify: bool) -> None:
    """One push with a lease; ``verify=False`` (undo only) skips local pre-push hooks."""
    lease = f"--force-with-lease=refs/heads/{target.branch}:{expect}"
    flags = ["--porcelain", lease] + ([] if verify else ["--no-verify"])
    proc = target.git.run("push", *flags, operands=[target.remote, refspec], network=True, check=False)
    if proc.returncode != 0:
        detail = Git.tail(proc.stderr + b"\n" + proc.stdout)
        raise GitopsError(
            f"push of {target.branch!r} to {target.remote!r} ({scrub(target.remote_url)}) was rejected: {detail}"
        )


def _mode(git: Git, rev: str, rel: str) -> str:
    listing = git.out("ls-tree", operands=[rev, rel])
    return listing.split()[0] if listing else "100644"


def _identity(git: Git) -> dict[str, str]:
    """The user's git identity when configured; otherwise commits are signed as imgforge."""
    env: dict[str, str] = {}
    for key, var, fallback in (("user.name", "NAME", "imgforge"), ("user.email", "EMAIL", "imgforge@localhost")):
        configured = git.run("config", key, check=False).stdout.decode().strip()
        for who in ("AUTHOR", "COMMITTER"):
            if not configured and not os.environ.get(f"GIT_{who}_{var}"):
                env[f"GIT_{who}_{var}"] = fallback
    return env
