"""Forges imgforge opens merge/pull requests on: GitLab, GitHub, Gitea.

``connect`` picks the forge, its URL, the project and the token from (in order) explicit
arguments, environment variables and the GitOps repo's git remote URL, so a plain
``imgforge pr SITE --repo PATH`` works for a clone of ``git@gitlab.example.com:ops/gitops.git``
with only ``GITLAB_TOKEN`` set. Credentials embedded in a remote URL are dropped, never used or
shown: the token comes only from the environment variables each forge names in ``token_envs``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from imgforge.errors import ForgeError
from imgforge.forge.base import DuplicateRequest, Forge, ForgeUnauthorized, OpenRequest, RequestSpec
from imgforge.forge.gitea import Gitea
from imgforge.forge.github import GitHub
from imgforge.forge.gitlab import GitLab

__all__ = [
    "FORGES",
    "DuplicateRequest",
    "Forge",
    "ForgeUnauthorized",
    "OpenRequest",
    "RequestSpec",
    "connect",
    "forge_class",
    "parse_remote",
    "redact_url",
    "resolve",
]

FORGES: dict[str, type[Forge]] = {"gitlab": GitLab, "github": GitHub, "gitea": Gitea}
ENV_KIND = "IMGFORGE_FORGE"
ENV_URL = "IMGFORGE_FORGE_URL"
ENV_PROJECT = "IMGFORGE_FORGE_PROJECT"

_SCP_LIKE = re.compile(r"^(?:[^@/]+@)?(?P<host>[^:/]+):(?P<path>(?!/).+)$")  # git@host:group/proj.git
_HOST_HINTS = (
    ("gitlab", "gitlab"),
    ("github", "github"),
    ("gitea", "gitea"),
    ("forgejo", "gitea"),
    ("codeberg", "gitea"),
)


def forge_class(kind: str) -> type[Forge]:
    try:
        return FORGES[kind]
    except KeyError:
        raise ForgeError(f"unknown forge {kind!r}; expected one of {', '.join(FORGES)}") from None


def redact_url(url: str) -> str:
    """``url`` without user and password, for messages (remotes may embed a token)."""
    return re.sub(r"^([a-z][a-z0-9+.-]*://)[^/@]*@", r"\1", url.strip(), flags=re.I)


def parse_remote(remote_url: str) -> tuple[str, str] | None:
    """``(forge base URL, project path)`` of a git remote URL, or None for local remotes.

    ``git@host:g/p.git`` and ``ssh://git@host:2222/g/p.git`` map to ``https://host``; HTTP(S)
    remotes keep their scheme and port. The project path is what the forge's API names it by.
    """
    url = remote_url.strip()
    if "://" not in url:
        match = _SCP_LIKE.match(url)
        if not match or os.path.isabs(url) or url.startswith("."):
            return None
        return f"https://{match['host']}", _project(match["path"])
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.hostname:
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{parts.hostname}{port}", _project(parts.path)
    if parts.scheme in ("ssh", "git", "git+ssh") and parts.hostname:
        return f"https://{parts.hostname}", _project(parts.path)
    return None  # file://, local path


def _project(path: str) -> str:
    path = path.strip("/")
    return path[:-4] if path.endswith(".git") else path


def resolve(
    kind: str | None = None,
    *,
    url: str | None = None,
    project: str | None = None,
    remote_url: str | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[type[Forge], str, str]:
    """(forge class, base URL, project) from arguments, then ``IMGFORGE_FORGE*`` variables, then
    the remote URL; no token needed (``--dry-run`` uses this to show the exact request body)."""
    env = os.environ if env is None else env
    kind = kind or env.get(ENV_KIND) or None
    url = (url or env.get(ENV_URL) or "").rstrip("/") or None
    project = (project or env.get(ENV_PROJECT) or "").strip("/") or None
    derived = parse_remote(remote_url) if remote_url else None
    if derived and remote_url and url and project is None:
        # a forge served under a path (https://host/gitlab/...) : the project is what follows it
        prefix = urlsplit(url).path.strip("/")
        remote_path = urlsplit(redact_url(remote_url)).path.strip("/") if "://" in remote_url else derived[1]
        if prefix and remote_path.startswith(prefix + "/"):
            project = _project(remote_path[len(prefix) + 1 :])
    if derived:
        url = url or derived[0]
        project = project or derived[1]
    if not url or not project:
        where = f"the remote {redact_url(remote_url)!r}" if remote_url else "no remote URL"
        raise ForgeError(
            f"cannot tell the forge URL and project from {where}; pass --forge-url and "
            f"--project (or set {ENV_URL} and {ENV_PROJECT})"
        )
    return forge_class(kind or _guess_kind(url)), redact_url(url), project


def connect(
    kind: str | None = None,
    *,
    url: str | None = None,
    project: str | None = None,
    remote_url: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> Forge:
    """The forge to talk to, with its token from the environment variables it names (``timeout``:
    seconds a whole request may take; default ``IMGFORGE_HTTP_TIMEOUT`` or 15)."""
    env = os.environ if env is None else env
    cls, url, project = resolve(kind, url=url, project=project, remote_url=remote_url, env=env)
    token = next((env[name] for name in cls.token_envs if env.get(name)), "")
    if not token:
        raise ForgeError(f"no {cls.name} token: set {' or '.join(cls.token_envs)}")
    return cls(url, project, token, timeout=timeout)


def _guess_kind(url: str) -> str:
    host = (urlsplit(url).hostname or "").lower()
    for needle, kind in _HOST_HINTS:
        if needle in host:
            return kind
    raise ForgeError(
        f"cannot tell which forge serves {host or url!r}; pass --forge gitlab|github|gitea (or set {ENV_KIND})"
    )
