"""The registry client: one object per registry for every call imgforge makes to it.

:class:`RegistryClient` joins the call groups (tags here; manifests, blobs and referrers in their
own modules) over the one request funnel of :mod:`.api`, which holds the deadlines, caps, auth
challenges and typed errors. See ``docs/registry.md`` for the calls, their caps and deadlines.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from imgforge import _scrub
from imgforge._http import Answer, TransportError
from imgforge.errors import RegistryError
from imgforge.registry.api import (
    DEFAULT_TIMEOUT,
    ENV_PLAIN_HTTP,
    ENV_TLS,
    MAX_BLOB,
    MAX_PAGES,
    TAG,
    AuthRejected,
    BadRequest,
    BlobNotFound,
    DigestMismatch,
    ManifestNotFound,
    RegistryUnavailable,
    Repository,
    RepositoryNotFound,
    default_scheme,
    path,
    pull_scope,
)
from imgforge.registry.blobs import BlobCalls
from imgforge.registry.manifests import MANIFEST_TYPES, OCI_INDEX, OCI_MANIFEST
from imgforge.registry.referrers import Attached, ReferrerCalls, referrer_descriptor, referrers_tag

__all__ = [
    "DEFAULT_TIMEOUT",
    "ENV_PLAIN_HTTP",
    "ENV_TLS",
    "MANIFEST_TYPES",
    "MAX_BLOB",
    "MAX_PAGES",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "Attached",
    "AuthRejected",
    "BadRequest",
    "BlobNotFound",
    "DigestMismatch",
    "ManifestNotFound",
    "RegistryClient",
    "RegistryUnavailable",
    "Repository",
    "RepositoryNotFound",
    "default_scheme",
    "referrer_descriptor",
    "referrers_tag",
]

log = logging.getLogger("imgforge.registry")


class RegistryClient(ReferrerCalls, BlobCalls):
    """Talks to one registry: tags, manifests, blobs, referrers. Use as a context manager.

    Construction and limits: :class:`~imgforge.registry.api.RegistryApi`.
    """

    def __enter__(self) -> RegistryClient:
        return self

    def ping(self) -> None:
        """``GET /v2/``: the registry answers and accepts our credentials (or needs none)."""
        self._request("GET", "/v2/", repo=None, scope="")

    def list_tags(self, name: str) -> list[str]:
        """Every tag of ``name``, following ``Link: <...>; rel="next"`` pages of ``page_size``.

        Without a Link header, asks again from the page's last tag while pages are full (a longer
        page means the registry ignored ``n``, as distribution 2.8 does: that was all). If the
        registry rejects ``last`` with 400 (Harbor insists it is an existing tag, which breaks
        when tags change between pages), the whole list is fetched once without paging.
        """
        first = path(name, "tags", "list")
        tags: list[str] = []
        seen: set[str] = set()
        target: str = first
        params: dict[str, Any] | None = {"n": self.page_size}
        for _ in range(self.max_pages):
            try:
                r = self._request("GET", target, repo=name, scope=pull_scope(name), params=params)
            except BadRequest:
                if "last" not in (params or {}) and "last=" not in urlsplit(target).query:
                    raise
                log.debug("%s rejected 'last'; listing %s without paging", self.registry, name)
                return _merge(
                    tags, self._tags_page(self._request("GET", first, repo=name, scope=pull_scope(name)), name)
                )
            page = self._tags_page(r, name)
            new = [t for t in page if t not in seen]
            seen.update(new)
            tags.extend(new)
            try:
                link = r.next_page(self.base)
            except TransportError as e:
                raise RegistryError(f"{self._where(name)} {e.reason}") from None
            if link:
                target, params = link, None
            elif page and new and len(page) == self.page_size:
                target, params = first, {"n": self.page_size, "last": page[-1]}
            else:
                return tags
            if not new:
                return tags  # the registry repeated a page: stop rather than loop
        raise RegistryError(f"registry {self.registry}: tag list of {name} did not end after {self.max_pages} pages")

    @staticmethod
    def _tags_page(r: Answer, repo: str) -> list[str]:
        try:
            data = r.json()
        except ValueError:
            raise RegistryError(f"tag list of {repo}: the registry did not answer JSON") from None
        tags = data.get("tags") if isinstance(data, dict) else None
        if tags is None:
            return []  # distribution answers {"tags": null} for a repository without tags
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise RegistryError(f"tag list of {repo}: 'tags' is not a list of strings")
        bad = next((t for t in tags if not TAG.fullmatch(t)), None)
        if bad is not None:  # no registry accepts such a push: this answer is broken or hostile
            raise RegistryError(f"tag list of {repo}: {_scrub.sanitize(repr(bad), limit=60)} is not a valid tag name")
        return tags


def _merge(first: list[str], more: list[str]) -> list[str]:
    """``first`` then the tags of ``more`` not already in it, order kept."""
    known = set(first)
    return first + [t for t in dict.fromkeys(more) if t not in known]
