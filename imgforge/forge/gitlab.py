"""GitLab merge requests (REST API v4): ``/api/v4/projects/:id/merge_requests``.

The project id is the URL-encoded path (``group%2Fsub%2Fproject``) or the numeric id. GitLab pages
with ``X-Next-Page`` (and ``Link``), answers 409 when an open merge request already exists for the
source branch, and takes the token in the ``PRIVATE-TOKEN`` header.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from imgforge.forge.base import Forge, OpenRequest, RequestSpec, _object


class GitLab(Forge):
    name = "gitlab"
    noun = "merge request"
    token_envs = ("IMGFORGE_GITLAB_TOKEN", "GITLAB_TOKEN")

    @property
    def api_root(self) -> str:
        return self.base_url if self.base_url.endswith("/api/v4") else f"{self.base_url}/api/v4"

    @property
    def _mrs(self) -> str:
        return f"/projects/{quote(self.project, safe='')}/merge_requests"

    def _auth_headers(self) -> dict[str, str]:
        return {"PRIVATE-TOKEN": self._token}

    def _list_open(self) -> Iterator[dict[str, Any]]:
        return self._pages(self._mrs, {"state": "opened", "per_page": 100})

    def _parse(self, item: dict[str, Any]) -> OpenRequest:
        return OpenRequest(
            number=int(item["iid"]),
            url=item.get("web_url") or "",
            title=item.get("title") or "",
            body=item.get("description") or "",
            source_branch=item.get("source_branch") or "",
            target_branch=item.get("target_branch") or "",
        )

    @classmethod
    def create_payload(cls, spec: RequestSpec) -> dict[str, Any]:
        # remove_source_branch: the bot branch is deleted on merge, as Renovate's are
        return {
            "source_branch": spec.source_branch,
            "target_branch": spec.target_branch,
            "title": spec.title,
            "description": spec.body,
            "remove_source_branch": True,
        }

    def update_payload(self, spec: RequestSpec) -> dict[str, Any]:
        return {"title": spec.title, "description": spec.body}

    def close_payload(self) -> dict[str, Any]:
        return {"state_event": "close"}

    def _create(self, payload: dict[str, Any]) -> dict[str, Any]:
        return _object(self._call("POST", self._mrs, json=payload), self.name)

    def _edit(self, number: int, payload: dict[str, Any]) -> dict[str, Any]:
        return _object(self._call("PUT", f"{self._mrs}/{number}", json=payload), self.name)

    def _is_duplicate(self, status: int, detail: str) -> bool:
        return status == 409 or "already exists" in detail.lower()
