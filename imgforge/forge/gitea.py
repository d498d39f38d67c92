"""Gitea (and Forgejo) pull requests (REST API v1): ``/api/v1/repos/:owner/:repo/pulls``.

Gitea pages with ``Link`` (``limit`` is capped at 50 by default), answers 409 "pull request
already exists for these targets" on a duplicate, and takes ``Authorization: token <token>``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from imgforge.forge.base import Forge, OpenRequest, RequestSpec, _object
from imgforge.forge.github import parse_pull


class Gitea(Forge):
    name = "gitea"
    noun = "pull request"
    token_envs = ("IMGFORGE_GITEA_TOKEN", "GITEA_TOKEN")

    @property
    def api_root(self) -> str:
        return self.base_url if self.base_url.endswith("/api/v1") else f"{self.base_url}/api/v1"

    @property
    def _pulls(self) -> str:
        return f"/repos/{self.project}/pulls"

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self._token}"}

    def _list_open(self) -> Iterator[dict[str, Any]]:
        return self._pages(self._pulls, {"state": "open", "limit": 50})

    def _parse(self, item: dict[str, Any]) -> OpenRequest:
        return parse_pull(item)

    @classmethod
    def create_payload(cls, spec: RequestSpec) -> dict[str, Any]:
        return {"title": spec.title, "head": spec.source_branch, "base": spec.target_branch, "body": spec.body}

    def _create(self, payload: dict[str, Any]) -> dict[str, Any]:
        return _object(self._call("POST", self._pulls, json=payload), self.name)

    def _edit(self, number: int, payload: dict[str, Any]) -> dict[str, Any]:
        return _object(self._call("PATCH", f"{self._pulls}/{number}", json=payload), self.name)

    def _is_duplicate(self, status: int, detail: str) -> bool:
        return status == 409 or "already exists" in detail.lower()
