"""``imgforge adopt``: one catalog entry per root nginx site the fleet runs, taken from its image.

The fleet's site images run as root, and most of their git URLs are unknown to the catalog. Each
running image holds exactly the web root production serves, and its nginx config says where that
root is, which fallback it uses and which headers it adds. So the rendered fleet (``fleet``'s
kustomize renders) names the Deployments; each container image is read from its registry and
judged (``audit.adoptable``: nginx present, root or no USER, a web root with files); and every
site that qualifies gets ``sites/<name>.toml`` whose content is that web root of that exact
digest (``[source] image``), its next patch tag, its fallback and headers, the catalog's default
uid/gid/port and the app and namespace it was found in. Everything else is listed with the reason.

Existing entries are never overwritten, and a run writes all its files or none: each file is
linked into place only if its name is free, and if any write or the catalog check after them
fails, the files of this run are removed again.
"""

from __future__ import annotations

import os
import re
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import tomlkit

from imgforge import config
from imgforge._fs import atomic_write_text
from imgforge.audit.adoptable import ImageSite, read_image_site
from imgforge.audit.fleet import ContainerRow, fleet_report
from imgforge.audit.migrate import carried_header
from imgforge.errors import CatalogError, ImgforgeError, Refused, UsageError
from imgforge.image_ref import ImageRef

_SEMVER = re.compile(r"(v?)(\d+)\.(\d+)\.(\d+)")


@dataclass(frozen=True)
class Adopted:
    """One catalog entry made (or, with ``--dry-run``, that would be made)."""

    site: str
    file: str  # sites/<site>.toml
    app: str
    namespace: str | None
    container: str
    image: str  # the running reference
    digest: str
    content_dir: str
    text: str  # the TOML written
    completes: bool = False  # an existing entry without a source got one; nothing else of it changed
    previous: str | None = field(default=None, repr=False)  # that entry's text as read (not in --json)


@dataclass(frozen=True)
class NotAdopted:
    app: str
    workload: str
    container: str
    image: str | None
    reason: str


@dataclass
class AdoptResult:
    adopted: list[Adopted] = field(default_factory=list)
    not_adopted: list[NotAdopted] = field(default_factory=list)
    written: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "written": self.written,
            "adopted": [{k: v for k, v in asdict(a).items() if k != "previous"} for a in self.adopted],
            "not_adopted": [asdict(n) for n in self.not_adopted],
        }


def adopt(
    repo: str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
    *,
    match: str | None = None,
    dry_run: bool = False,
    jobs: int | None = None,
) -> AdoptResult:
    """Find the fleet's root nginx sites and write their catalog entries (not with ``dry_run``)."""
    pattern = _pattern(match)
    catalog = config.load_catalog(root)
    report = fleet_report(repo, catalog.settings.overlay_root, jobs=jobs)
    matching = [r for r in report.rows if not r.init and (pattern is None or pattern.search(r.app))]
    rows = [r for r in matching if r.kind == "Deployment"]
    result = AdoptResult()
    for failed in report.failures:  # kustomize's own error, one line, as `fleet` shows it
        if pattern is None or pattern.search(failed.app):
            why = "did not render: " + " ".join(failed.error.split())
            result.not_adopted.append(NotAdopted(failed.app, "-", "-", None, why))
    for other in matching:
        if other.kind != "Deployment":
            result.not_adopted.append(_not(other, f"a {other.kind}: adopt takes the sites Deployments serve"))
    candidates: list[ContainerRow] = []
    for row in rows:
        if reason := _row_problem(row, catalog):
            result.not_adopted.append(_not(row, reason))
        else:
            candidates.append(row)
    images = _read_images({r.image for r in candidates if r.image}, jobs or 4)
    taken: dict[str, str] = {}  # site name -> app, within this run
    containers = {(r.app, r.workload): sum(1 for x in rows if (x.app, x.workload) == (r.app, r.workload)) for r in rows}
    for row in candidates:
        assert row.image is not None
        facts = images[row.image]
        if isinstance(facts, str) or facts.problem:
            result.not_adopted.append(_not(row, facts if isinstance(facts, str) else str(facts.problem)))
            continue
        existing = _existing(catalog, row.app)
        name = existing.name if existing else _site_name(row.app)
        reason = _name_problem(name, row, catalog, taken, existing is not None)
        if reason:
            result.not_adopted.append(_not(row, reason))
            continue
        assert name is not None
        if existing is not None:
            entry = _completion(existing, row, facts, catalog)
        else:
            entry = _entry(name, row, facts, catalog, several=containers[(row.app, row.workload)] > 1)
        try:  # what the image and the manifests say is hostile input too: the catalog's patterns judge it
            config.check_new_site(catalog, name, entry.text)
        except CatalogError as e:
            result.not_adopted.append(_not(row, f"the entry would not be valid: {e}"))
            continue
        taken[name] = row.app
        result.adopted.append(entry)
    if not dry_run and result.adopted:
        _write_all(catalog.root, result.adopted)
        result.written = True
    return result


def _pattern(match: str | None) -> re.Pattern[str] | None:
    if match is None:
        return None
    try:
        return re.compile(match)
    except re.error as e:
        raise UsageError(f"--match {match!r}: not a regular expression: {e}") from e


def _not(row: ContainerRow, reason: str) -> NotAdopted:
    return NotAdopted(row.app, f"{row.kind}/{row.workload}", row.container, row.image, reason)


def _row_problem(row: ContainerRow, catalog: config.Catalog) -> str | None:
    """Why the manifests alone rule the container out, or None."""
    if not row.image:
        return "no image in the manifest"
    if row.cls == "linuxserver":
        return "a LinuxServer.io image: it starts as root and drops to PUID/PGID by design"
    if row.uid is not None and row.uid > 0:
        return f"runs as UID {row.uid} already (runAsUser in the manifests)"
    ref = ImageRef.parse(row.image)
    if not config.REPOSITORY.fullmatch(ref.name):
        return f"image {row.image!r}: not a repository the catalog can hold"
    site = _existing(catalog, row.app)
    if site is not None and _has_origin(site):
        return f"already in the catalog as {site.file}"
    if site is not None and not ref.same_repository(site.image):
        return f"{site.file} names image {site.image}, but the app runs {ref.name}"
    return None


def _existing(catalog: config.Catalog, app: str) -> config.Site | None:
    return next((s for s in catalog.sites.values() if s.app == app), None)


def _has_origin(site: config.Site) -> bool:
    src = site.source
    return src is not None and (src.path is not None or src.git is not None or src.image is not None)


def _read_images(references: set[str], jobs: int) -> dict[str, ImageSite | str]:
    """Each image read and judged once (``jobs`` at a time); a failure is the row's reason."""

    def one(ref: str) -> ImageSite | str:
        try:
            return read_image_site(ref)
        except ImgforgeError as e:
            return f"image not read: {e}"

    unique = sorted(references)
    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="imgforge-adopt") as pool:
        return dict(zip(unique, pool.map(one, unique), strict=True))


def _site_name(app: str) -> str | None:
    """The site name for an app folder: ``sofmeright-site`` -> ``sofmeright`` (lowercase, dashes)."""
    name = re.sub(r"[^a-z0-9-]+", "-", app.lower()).strip("-")
    name = name.removesuffix("-site") or name
    return name if config.SITE_NAME.fullmatch(name) else None


def _name_problem(
    name: str | None, row: ContainerRow, catalog: config.Catalog, taken: dict[str, str], existing: bool
) -> str | None:
    if name is None:
        return f"app {row.app!r} gives no valid site name (lowercase letters, digits, dashes)"
    if name in taken:
        return f"site {name} is taken by app {taken[name]} in this run (one site per workload)"
    if existing:
        return None
    if name in catalog.sites or (catalog.root / config.SITES_DIR / f"{name}.toml").exists():
        return f"{config.SITES_DIR}/{name}.toml already exists; not overwriting it"
    return None


def next_patch(tag: str | None) -> tuple[str, str]:
    """(the tag after ``tag``, why): ``v0.0.5`` -> ``v0.0.6``; a tag that is no version -> ``v0.0.1``."""
    m = _SEMVER.fullmatch(tag or "")
    if m is None:
        return "v0.0.1", f"the running tag {tag or '(none)'!r} is not a version"
    prefix, major, minor, patch = m.groups()
    return f"{prefix}{major}.{minor}.{int(patch) + 1}", f"the running tag is {tag}"


def _entry(name: str, row: ContainerRow, facts: ImageSite, catalog: config.Catalog, several: bool) -> Adopted:
    assert row.image is not None and facts.web_root is not None
    ref = ImageRef.parse(row.image)
    tag, tag_why = next_patch(ref.tag)
    pinned = f"{ref.name}@{facts.digest}"
    behaviour = facts.behaviour
    defaults = catalog.settings.defaults
    doc = tomlkit.document()
    doc.add(tomlkit.comment(f"{name} — adopted by `imgforge adopt` from the image app {row.app} runs."))
    ids = f"{defaults.get('uid', 100)}:{defaults.get('gid', 101)}, port {defaults.get('port', 8080)}"
    doc.add(
        tomlkit.comment(f"uid:gid and port are the catalog's ({ids}); the root image ran as {facts.user or 'root'}.")
    )
    doc.add("image", ref.name)
    doc.add("tag", tag)
    doc["tag"].comment(tag_why)
    doc.add("description", f"{name} static site")
    doc.add("fallback", behaviour["fallback"])
    doc["fallback"].comment("from try_files" if behaviour["try_files"] else "no try_files: missing files are 404")
    doc.add("ipv6", "auto" if behaviour["ipv6"] else "off")
    doc.add("gzip", behaviour["gzip"])
    doc.add("cache_assets", behaviour["cache_assets"])
    source = tomlkit.table()
    source.add("image", pinned)
    source["image"].comment(f"running as {row.image}")
    source.add("content_dir", facts.web_root)
    source["content_dir"].comment("the nginx root directive")
    doc.add(tomlkit.nl())
    doc.add("source", source)
    headers = {n: v for n, v in behaviour["headers"].items() if carried_header(n, v)}
    if headers:
        table = tomlkit.table()
        for header, value in headers.items():
            table.add(header, value)
        doc.add(tomlkit.nl())
        doc.add("headers", table)
    gitops = tomlkit.table()
    gitops.add("app", row.app)
    if row.namespace:
        gitops.add("namespace", row.namespace)
    if several:
        gitops.add("container", row.container)
    doc.add(tomlkit.nl())
    doc.add("gitops", gitops)
    return Adopted(
        name,
        f"{config.SITES_DIR}/{name}.toml",
        row.app,
        row.namespace,
        row.container,
        row.image,
        facts.digest,
        facts.web_root,
        tomlkit.dumps(doc),
    )


def _completion(site: config.Site, row: ContainerRow, facts: ImageSite, catalog: config.Catalog) -> Adopted:
    """``site``'s file with a ``[source]`` from the running image; every other line as it was."""
    assert row.image is not None and facts.web_root is not None
    ref = ImageRef.parse(row.image)
    previous = catalog.site_path(site).read_text(encoding="utf-8")
    doc = tomlkit.parse(previous)
    source = doc.get("source")
    if source is None:
        source = tomlkit.table()
        doc.add(tomlkit.nl())
        doc.add("source", source)
    before = source.get("content_dir")
    source["image"] = f"{ref.name}@{facts.digest}"
    source["image"].comment(f"adopted: running as {row.image}")
    source["content_dir"] = facts.web_root
    was = f"; in the site repo: {before}" if before is not None else ""
    source["content_dir"].comment(f"the nginx root directive{was}")
    return Adopted(
        site.name,
        site.file,
        row.app,
        row.namespace,
        row.container,
        row.image,
        facts.digest,
        facts.web_root,
        tomlkit.dumps(doc),
        completes=True,
        previous=previous,
    )


def _write_all(root: Path, entries: list[Adopted]) -> None:
    """Every entry's file: a new one only where no file is, a completed one only if it is still
    as it was read. On any failure every file is as before the run (new ones removed, completed
    ones restored)."""
    undo: list[tuple[Path, str | None]] = []  # (file, its text before; None: it was not there)
    path = root
    try:
        for entry in entries:
            path = root / entry.file
            if entry.completes:
                _rewrite_unchanged(path, entry.previous, entry.text)
                undo.append((path, entry.previous))
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                _write_new(path, entry.text)
                undo.append((path, None))
        config.load_catalog(root)
    except FileExistsError as e:
        _undo(undo)
        raise Refused(f"{path} appeared or changed while adopt ran; not overwriting it, nothing written") from e
    except OSError as e:
        _undo(undo)
        raise UsageError(f"cannot write {path}: {e.strerror}; nothing written") from e
    except CatalogError:
        _undo(undo)
        raise


def _rewrite_unchanged(path: Path, previous: str | None, text: str) -> None:
    """``text`` over ``path`` only while ``path`` still holds ``previous`` (FileExistsError otherwise)."""
    if path.read_text(encoding="utf-8") != previous:
        raise FileExistsError(path)
    atomic_write_text(path, text)


def _undo(done: list[tuple[Path, str | None]]) -> None:
    for path, before in reversed(done):
        if before is None:
            path.unlink(missing_ok=True)
        else:
            atomic_write_text(path, before)


def _write_new(path: Path, text: str) -> None:
    """``text`` at ``path`` whole (a temp file linked into place), never over an existing file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.link(tmp, path)  # fails with FileExistsError where a file is: never replaced
    finally:
        os.unlink(tmp)
