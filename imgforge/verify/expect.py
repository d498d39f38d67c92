"""What a running image must do, read from the content manifest the image itself carries.

The checks take every expectation from here (user, port, fallback, headers, the files to serve
and to hide), never from a catalog ``Site``: ``imgforge test --image`` runs with no catalog and no
content at all, and an image is judged by what it was built from (``content_manifest``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from imgforge.content_manifest import ContentManifest


@dataclass(frozen=True)
class Expect:
    """The promises of one image's content manifest, in the shape the checks use."""

    site: str
    uid: int
    gid: int
    port: int
    fallback: str  # "spa" or "404"
    headers: tuple[tuple[str, str], ...]  # every response carries these (render.headers_for)
    content_root: str  # the web root inside the image
    served: tuple[str, ...]  # content files that must be served byte for byte
    hidden: tuple[str, ...]  # content files left out: never served
    hashes: dict[str, str] = field(default_factory=dict, compare=False)  # served file -> sha256
    sizes: dict[str, int] = field(default_factory=dict, compare=False)  # served file -> bytes

    @classmethod
    def from_manifest(cls, manifest: ContentManifest) -> Expect:
        return cls(
            site=manifest.site,
            uid=manifest.uid,
            gid=manifest.gid,
            port=manifest.port,
            fallback=manifest.fallback,
            headers=manifest.headers,
            content_root=manifest.content_root,
            served=tuple(sorted(manifest.served)),
            hidden=manifest.left_out,
            hashes={rel: f.sha256 for rel, f in manifest.served.items()},
            sizes={rel: f.size for rel, f in manifest.served.items()},
        )

    @property
    def user(self) -> str:
        return f"{self.uid}:{self.gid}"

    @property
    def spa(self) -> bool:
        return self.fallback == "spa"

    @property
    def index(self) -> str | None:
        return "index.html" if "index.html" in self.served else None

    def fallback_sha(self) -> str | None:
        """Body a missing path may get: the index page of an SPA site, nothing for a 404 site."""
        return self.hashes[self.index] if self.spa and self.index else None
