"""The one image reference type: ``[registry/]path[:tag][@digest]``, parsed the way Docker does.

Registries, GitOps manifests, Dockerfiles and the engine's RepoDigests all name images, each in
its own spelling (``nginx``, ``docker.io/library/nginx``, ``index.docker.io/library/nginx:1.27``,
``127.0.0.1:5000/team/site@sha256:…``). Every module that must decide whether two spellings are
the same image, which registry host to ask, or which part is the tag uses this type, so the rules
(a first component with a ``.`` or ``:`` or ``localhost`` is a registry; a ``:`` after the last
``/`` starts the tag; Docker Hub's official images live under ``library/``) exist once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

DOCKER_HUB = "docker.io"
_HUB_ALIASES = ("docker.io", "index.docker.io", "registry-1.docker.io")


@dataclass(frozen=True)
class ImageRef:
    """A parsed reference. ``name`` keeps the spelling it was written with (never rewritten)."""

    name: str  # as written, without tag and digest: "nginx", "cr.example.com/team/site"
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        """``name[:tag][@digest]``; a registry port (``host:5000/x``) is not a tag."""
        rest, _, digest = text.strip().partition("@")
        slash, colon = rest.rfind("/"), rest.rfind(":")
        if colon > slash:
            return cls(rest[:colon], rest[colon + 1 :] or None, digest or None)
        return cls(rest, None, digest or None)

    @property
    def registry(self) -> str:
        """The registry host as written (``docker.io`` for Docker Hub, whichever alias was used)."""
        first, sep, _ = self.name.partition("/")
        if sep and ("." in first or ":" in first or first == "localhost"):
            return DOCKER_HUB if first in _HUB_ALIASES else first
        return DOCKER_HUB

    @property
    def path(self) -> str:
        """The repository path inside its registry; Docker Hub's official images get ``library/``."""
        first, sep, rest = self.name.partition("/")
        explicit = sep and ("." in first or ":" in first or first == "localhost")
        path = rest if explicit else self.name
        if self.registry == DOCKER_HUB and "/" not in path:
            return f"library/{path}"
        return path

    @property
    def api_host(self) -> str:
        """The host the registry API answers on (Docker Hub's differs from its name)."""
        return "registry-1.docker.io" if self.registry == DOCKER_HUB else self.registry

    @property
    def canonical(self) -> str:
        """``registry/path``: equal for every spelling of the same repository."""
        return f"{self.registry}/{self.path}"

    @property
    def familiar(self) -> str:
        """The short form Docker shows: ``nginx``, ``team/x`` for Docker Hub; ``host/path`` otherwise."""
        if self.registry != DOCKER_HUB:
            return self.canonical
        return self.path.removeprefix("library/")

    def same_repository(self, other: ImageRef | str) -> bool:
        other = ImageRef.parse(other) if isinstance(other, str) else other
        return self.canonical == other.canonical

    def with_tag(self, tag: str | None) -> ImageRef:
        return replace(self, tag=tag)

    def with_digest(self, digest: str | None) -> ImageRef:
        return replace(self, digest=digest)

    def __str__(self) -> str:
        return self.name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")
