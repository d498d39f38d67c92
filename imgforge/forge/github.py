"""GitHub pull requests (REST API): ``/repos/:owner/:repo/pulls``.

github.com is served from ``https://api.github.com``; GitHub Enterprise Server from
``https://<host>/api/v3``. GitHub pages with ``Link: <...>; rel="next"``, answers 422 "Validation
Failed" (with "A pull request already exists") on a duplicate, and takes a Bearer token.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from imgforge.forge.base import Forge, OpenRequest, RequestSpec, _object


class GitHub(Forge):
    name = "github"
    noun = "pull request"
    token_envs = ("IMGFORGE_GITHUB_TOKEN", "GITHUB_TOKEN")

    @property
    def api_root(self) -> str:
        host = urlsplit(self.base_url).hostname or ""
        if host in ("github.com", "www.github.com"):
            return "https://api.github.com"
        if host.startswith("api.") or self.base_url.endswith("/api/v3"):
            return self.base_url
        return f"{self.base_url}/api/v3"

    @property
    def _pulls(self) -> str:
        return f"/repos/{self.project}/pulls"

    def _auth_headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self._token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        }

    def _list_open(self) -> Iterator[dict[str, Any]]:
        return self._pages(self._pulls, {"state": "open", "per_page": 100})

    def _parse(self, item: dict[str, Any]) -> OpenRequest:
        return parse_pull(item)

    @classmethod
    def create_payload(cls, spec: RequestSpec) -> dict[str, Any]:
        return {
            "title": spec.title,
            "head": spec.source_branch,
            "base": spec.target_branch,
            "body": spec.body,
            "maintainer_can_modify": True,
        }

    def _create(self, payload: dict[str, Any]) -> dict[str, Any]:
        return _object(self._call("POST", self._pulls, json=payload), self.name)

    def _edit(self, number: int, payload: dict[str, Any]) -> dict[str, Any]:
        return _object(self._call("PATCH", f"{self._pulls}/{number}", json=payload), self.name)

    def _is_duplicate(self, status: int, detail: str) -> bool:
        # 422 also means "no commits between", "head invalid"...: only "already exists" is a duplicate
        return status == 422 and "already exists" in detail.lower()


def parse_pull(item: dict[str, Any]) -> OpenRequest:
    """A pull request as GitHub returns it; Gitea (and Forgejo) copied the shape field for field."""
    return OpenRequest(
        number=int(item["number"]),
        url=item.get("html_url") or "",
        title=item.get("title") or "",
        body=item.get("body") or "",
        source_branch=(item.get("head") or {}).get("ref", ""),
        target_branch=(item.get("base") or {}).get("ref", ""),
    )
