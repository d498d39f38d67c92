"""Where a site's static files come from: a local folder, or a git repository at a ref.

Git sources are fetched into a bare mirror under the cache folder and exported per commit, so a
given ref always yields the same files and the commit becomes the image's revision label. The
third kind, a folder inside a container image, needs the registry client and lives a rank up, in
``content_image``; it returns the same ``Content``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from imgforge import _git
from imgforge._fs import replace_dir, staging_dir
from imgforge.config import Catalog, Site
from imgforge.errors import ContentMissing, GitError


@dataclass(frozen=True)
class Content:
    """The folder whose files are served, and where they come from (for the image's labels).

    For a local folder the commit and remote are asked of git only when a build needs its
    labels: a warm build that is skipped never runs git.
    """

    path: Path
    fetched_revision: str | None = None  # the commit of a git source
    url: str | None = None  # a git source's URL
    local_path: str | None = None  # a local source as the catalog names it
    image: str | None = None  # an image source, pinned: ``repo@sha256:…`` (or the engine image it came from)

    @property
    def revision(self) -> str | None:
        return self.fetched_revision or _local_revision(self.path)

    @property
    def source(self) -> str:
        """For the source label: never with the userinfo of a URL (it may hold a token)."""
        if self.image:
            return self.image
        return _git.strip_userinfo(self.url or _local_source(self.path) or self.local_path or str(self.path))


def cache_dir() -> Path:
    return Path(
        os.environ.get("IMGFORGE_CACHE_DIR")
        or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "imgforge")
    )


def unavailable_reason(catalog: Catalog, site: Site) -> str | None:
    """Why the site's content cannot be used without trying the network, or None when it can."""
    src = site.source
    if src is None or (src.path is None and src.git is None and src.image is None):
        return f"{site.file}: source: no path, git URL or image configured"
    if src.path is not None:
        folder = catalog.root / src.path / src.content_dir
        if not folder.is_dir():
            return f"{site.file}: source: content folder {folder} does not exist"
    return None


def resolve(catalog: Catalog, site: Site) -> Content:
    """The site's content folder, fetching a git source when needed; ContentMissing otherwise.

    An image source is ``content_image.resolve_image``'s (``render.prepare`` picks).
    """
    if reason := unavailable_reason(catalog, site):
        raise ContentMissing(reason)
    src = site.source
    assert src is not None
    if src.path is not None:
        folder = (catalog.root / src.path / src.content_dir).resolve()
        return Content(folder, local_path=src.path)
    if src.git is None:
        raise ContentMissing(f"{site.file}: source: an image source is read by content_image, not here")
    commit, folder = _export_git(src.git, src.ref, src.content_dir, site)
    return Content(folder, fetched_revision=commit, url=src.git)


def _local_revision(folder: Path) -> str | None:
    """HEAD of the repository holding ``folder``: the last commit that touched the folder needs
    history a shallow clone (CI) lacks, and the revision label must not depend on clone depth."""
    try:
        return _git.out("rev-parse", "--verify", "HEAD", cwd=folder) or None
    except GitError:
        return None


def _local_source(folder: Path) -> str | None:
    """The catalog repository's remote URL, for the image's source label (``source`` strips it)."""
    try:
        url = _git.out("config", "--get", "remote.origin.url", cwd=folder)
    except GitError:
        return None
    return url or None


def _export_git(url: str, ref: str, content_dir: str, site: Site) -> tuple[str, Path]:
    mirror = cache_dir() / "sources" / (hashlib.sha256(url.encode()).hexdigest()[:16] + ".git")
    try:
        if not mirror.exists():
            mirror.parent.mkdir(parents=True, exist_ok=True)
            _git.run("init", "--bare", "-q", operands=[str(mirror)])
        _git.run("fetch", "-q", "--force", cwd=mirror, operands=[_git.Url(url), _git.Ref(ref)], network=True)
        commit = _git.out("rev-parse", "--verify", "FETCH_HEAD^{commit}", cwd=mirror)
    except GitError as e:
        raise ContentMissing(f"{site.file}: source: cannot fetch {ref!r} from {_git.redact(url)}: {e.detail}") from e
    export = mirror.with_suffix("") / commit
    if not export.exists():
        staged = staging_dir(export)
        try:
            with tempfile.TemporaryFile() as archive:
                archive.write(_git.run("archive", "--format=tar", cwd=mirror, operands=[commit]).stdout)
                archive.seek(0)
                with tarfile.open(fileobj=archive) as tar:
                    tar.extractall(staged, filter="data")
            replace_dir(staged, export)
        except (GitError, tarfile.TarError, OSError) as e:
            detail = e.detail if isinstance(e, GitError) else str(e)
            raise ContentMissing(
                f"{site.file}: source: cannot export {commit[:12]} of {_git.redact(url)}: {detail}"
            ) from e
        finally:
            shutil.rmtree(staged, ignore_errors=True)
    folder = export / content_dir
    if not folder.is_dir():
        raise ContentMissing(f"{site.file}: source: {_git.redact(url)}@{ref} has no folder {content_dir!r}")
    return commit, folder
