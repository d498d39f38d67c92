"""Reading a site repo once, for ``audit`` and ``migrate``: Dockerfile, nginx configs, web roots.

The Dockerfile is read with dockerfile-parse and followed stage by stage, so what counts is what
ends up in the final image (its USER, its ENV, which repo files are COPYed where). nginx configs
are read with crossplane, a real nginx parser, so nesting and line numbers are right. The web
root is found from the nginx ``root`` directives and the COPY instructions that fill them, which
is also how ``migrate`` learns which folder holds the site's content.
"""

from __future__ import annotations

import fnmatch
import io
import json
import os
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockerfile_parse import DockerfileParser

from imgforge.audit._shell import expand
from imgforge.audit.nginx_rules import NginxUnparsable, Parsed, parse_file, walk_directives, web_roots
from imgforge.errors import AuditUnreadable
from imgforge.image_ref import ImageRef

DOCKERFILE_NAMES = ("Dockerfile", "Containerfile")
_SKIP_DIRS = {".git", "node_modules", ".venv", "__pycache__"}
DEFAULT_ROOTS = ("/usr/share/nginx/html", "/var/www/html", "/var/lib/nginx/html")
Instruction = dict[str, Any]  # one dockerfile-parse ``structure`` entry: instruction, value, startline, …
CONVENTIONAL_WEBROOTS = ("www-data", "public", "html", "www", "site")


@dataclass
class Stage:
    name: str | None
    base: str  # as written, after ARG expansion
    line: int
    parent: Stage | None  # the earlier stage this one is built FROM, if any
    global_args: dict[str, str] = field(default_factory=dict)  # ARGs declared before the first FROM
    items: list[Instruction] = field(default_factory=list)  # dockerfile-parse entries after FROM

    def chain(self) -> list[Stage]:
        """This stage and the stages it inherits from, oldest first (what the image really has)."""
        return ([*self.parent.chain()] if self.parent else []) + [self]

    def external_base(self) -> str:
        return self.chain()[0].base


@dataclass
class Repo:
    """What an audit (and ``migrate``) needs from a repo, read once."""

    root: Path
    dockerfile: str | None = None
    final: Stage | None = None
    nginx: dict[str, Parsed] = field(default_factory=dict)  # rel path -> crossplane "parsed"
    copies: dict[str, str] = field(default_factory=dict)  # container path -> repo rel path
    dir_copies: list[tuple[str, str]] = field(default_factory=list)  # (repo rel dir, container dir)
    webroots: dict[str, dict[str, str]] = field(default_factory=dict)  # root -> {served rel: repo rel}
    env: dict[str, str] = field(default_factory=dict)  # ARG defaults and ENV of the final stage


def read_repo(path: str | os.PathLike[str]) -> Repo:
    root = Path(path)
    if not root.is_dir():
        raise AuditUnreadable(f"{root}: {'not a folder' if root.exists() else 'no such folder'}")
    repo = Repo(root=root.resolve())
    dockerfile = next((root / n for n in DOCKERFILE_NAMES if (root / n).is_file()), None)
    if dockerfile is not None:
        repo.dockerfile = dockerfile.name
        repo.final = _read_dockerfile(dockerfile)
        repo.env = _stage_env(repo.final)
        _map_copies(repo)
    _read_nginx(repo)
    if repo.dockerfile is None and not repo.nginx:
        raise AuditUnreadable(f"{root}: no Dockerfile and no nginx config found")
    _find_webroots(repo)
    return repo


def _read_dockerfile(path: Path) -> Stage:
    try:
        data = path.read_bytes()
        data.decode("utf-8")
        structure = DockerfileParser(fileobj=io.BytesIO(data), env_replace=False).structure
    except (OSError, UnicodeDecodeError) as e:
        raise AuditUnreadable(f"{path.name}: cannot read: {e}") from e
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for item in structure:
        kind = item["instruction"]
        if kind == "FROM":
            words = [w for w in expand(item["value"], global_args).split() if not w.startswith("--")]
            if not words:
                raise AuditUnreadable(f"{path.name}:{item['startline'] + 1}: FROM without an image")
            base, name = words[0], (words[2] if len(words) >= 3 and words[1].lower() == "as" else None)
            parent = next((s for s in reversed(stages) if s.name and s.name.lower() == base.lower()), None)
            stages.append(Stage(name, base, item["startline"] + 1, parent, global_args))
        elif not stages:
            if kind == "ARG":
                key, _, value = item["value"].partition("=")
                global_args[key.strip()] = value.strip().strip("\"'")
        else:
            stages[-1].items.append(item)
    if not stages:
        raise AuditUnreadable(f"{path.name}: no FROM instruction")
    return stages[-1]


def instructions(stage: Stage, kind: str) -> list[Instruction]:
    return [i for s in stage.chain() for i in s.items if i["instruction"] == kind]


def _stage_env(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    globals_ = stage.global_args
    for s in stage.chain():
        for item in s.items:
            if item["instruction"] == "ARG":
                key, eq, value = item["value"].partition("=")
                env[key.strip()] = value.strip().strip("\"'") if eq else globals_.get(key.strip(), "")
            elif item["instruction"] == "ENV":
                env.update(_env_pairs(item["value"], env))
    return env


def _env_pairs(value: str, env: dict[str, str]) -> dict[str, str]:
    try:
        words = shlex.split(value)
    except ValueError:
        words = value.split()
    if words and "=" not in words[0]:  # legacy `ENV KEY value with spaces`
        return {words[0]: expand(" ".join(words[1:]), env)}
    return {k: expand(v, env) for k, _, v in (w.partition("=") for w in words)}


def copy_args(item: Instruction) -> tuple[dict[str, str], list[str]]:
    """``COPY --chown=1:2 a b /dest`` -> ({"chown": "1:2"}, ["a", "b", "/dest"]); JSON form too."""
    value = item["value"].strip()
    flags: dict[str, str] = {}
    while value.startswith("--"):
        flag, _, value = value.partition(" ")
        key, _, val = flag[2:].partition("=")
        flags[key] = val
        value = value.strip()
    try:
        words = json.loads(value) if value.startswith("[") else shlex.split(value)
    except ValueError:
        words = value.split()
    return flags, [str(w) for w in words]


def _map_copies(repo: Repo) -> None:
    assert repo.final is not None
    ignore = _dockerignore(repo.root)
    workdir = "/"
    for item in [i for s in repo.final.chain() for i in s.items]:
        if item["instruction"] == "WORKDIR":
            workdir = os.path.join(workdir, expand(item["value"].strip(), repo.env))
        if item["instruction"] not in ("COPY", "ADD"):
            continue
        flags, words = copy_args(item)
        if "from" in flags or len(words) < 2:
            continue
        *sources, dest = [expand(w, repo.env) for w in words]
        dest = os.path.normpath(os.path.join(workdir, dest)) + ("/" if dest.endswith("/") else "")
        for src in sources:
            if "://" in src:
                continue
            for match in _sources(repo.root, src):
                rel = match.relative_to(repo.root).as_posix()
                if match.is_dir():
                    repo.dir_copies.append((rel if rel != "." else "", dest.rstrip("/") or "/"))
                    for f in _files(match, ignore, repo.root):
                        repo.copies[os.path.join(dest, os.path.relpath(f, match))] = f.relative_to(repo.root).as_posix()
                elif not _ignored(rel, ignore):
                    target = dest + match.name if dest.endswith("/") or len(sources) > 1 else dest
                    repo.copies[os.path.normpath(target)] = rel


def _sources(root: Path, src: str) -> list[Path]:
    """What a COPY source names in the build context (globs expanded); nothing outside the context."""
    pattern = os.path.normpath(src).lstrip("/")
    if pattern == ".":
        return [root]
    if pattern.startswith(".."):
        return []
    try:
        return sorted(root.glob(pattern))
    except (ValueError, NotImplementedError):
        return []


def _files(folder: Path, ignore: list[str], root: Path) -> Iterator[Path]:
    """Files under ``folder``; dot-folders and dependency folders appear once, as the folder."""
    for current, dirs, files in os.walk(folder):
        for d in list(dirs):
            rel = (Path(current) / d).relative_to(root).as_posix()
            if _ignored(rel, ignore) or d in _SKIP_DIRS or d.startswith("."):
                dirs.remove(d)
                if not _ignored(rel, ignore) and d != ".well-known":
                    yield Path(current) / d
                elif d == ".well-known":
                    yield from _files(Path(current) / d, ignore, root)
        for name in files:
            path = Path(current) / name
            if not _ignored(path.relative_to(root).as_posix(), ignore):
                yield path


def _dockerignore(root: Path) -> list[str]:
    try:
        lines = (root / ".dockerignore").read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    return [ln.strip().lstrip("/") for ln in lines if ln.strip() and not ln.startswith("#")]


def _ignored(rel: str, patterns: list[str]) -> bool:
    ignored = False
    parts = rel.split("/")
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        for p in {pat, pat.removeprefix("**/")}:
            if any(fnmatch.fnmatch("/".join(parts[:n]), p) for n in range(1, len(parts) + 1)):
                ignored = not negate
    return ignored


def _looks_nginx(rel: str, repo: Repo) -> bool:
    return "nginx" in rel or any(rel == src and c.startswith("/etc/nginx") for c, src in repo.copies.items())


def _read_nginx(repo: Repo) -> None:
    for current, dirs, files in os.walk(repo.root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for name in sorted(files):
            if not (name.endswith((".conf", ".template")) or ".conf." in name or name == "nginx.conf"):
                continue
            path = Path(current) / name
            rel = path.relative_to(repo.root).as_posix()
            try:
                parsed = parse_file(path)
            except OSError as e:
                if _looks_nginx(rel, repo):
                    raise AuditUnreadable(f"{rel}: cannot read: {e}") from e
                continue
            except NginxUnparsable as e:
                if _looks_nginx(rel, repo):
                    at = f":{e.line}" if e.line else ""
                    raise AuditUnreadable(f"{rel}{at}: cannot parse nginx config: {e}") from e
                continue
            names = {d["directive"] for d, _ in walk_directives(parsed)}
            if names & {"http", "server", "events", "location", "listen", "worker_processes", "pid", "user"}:
                repo.nginx[rel] = parsed


def served_roots(repo: Repo) -> list[str]:
    """The folders nginx serves from: the configs' ``root``/``alias``, else the usual defaults."""
    return web_roots(repo.nginx) or list(DEFAULT_ROOTS)


def _find_webroots(repo: Repo) -> None:
    for root in served_roots(repo):
        prefix = root.rstrip("/") + "/"
        served = {c[len(prefix) :]: rel for c, rel in repo.copies.items() if c.startswith(prefix)}
        if served:
            repo.webroots[root.rstrip("/")] = served
    if not repo.webroots:
        for name in CONVENTIONAL_WEBROOTS:
            folder = repo.root / name
            if folder.is_dir():
                files = _files(folder, _dockerignore(repo.root), repo.root)
                repo.webroots[name] = {
                    f.relative_to(folder).as_posix(): f.relative_to(repo.root).as_posix() for f in files
                }
                break


def base_name(image: str) -> str:
    """``docker.io/library/nginx:1.27@sha256:..`` -> ``nginx`` (registry default, tag and digest dropped)."""
    return ImageRef.parse(image).familiar
