"""Evidence for a merge request: the registry digest of a tag and the `imgforge test` of that digest.

A worker: it joins the registry (datasource), the local engine and the verify record. Test
records are keyed by local image id, so the evidence counts only when the local image's
RepoDigests include the registry's digest: a rebuilt image with the same tag can never lend its
results to what the cluster would pull.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from imgforge.config import Site
from imgforge.errors import ImgforgeError
from imgforge.verify.state import last_result


@dataclass
class Evidence:
    """What proves the image: the registry digest of the tag and the `imgforge test` of that digest."""

    reference: str
    digest: str | None = None
    image_id: str | None = None
    report: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return bool(self.report and self.report.get("ok"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "digest": self.digest,
            "image_id": self.image_id,
            "verified": self.verified,
            "tested": self.report is not None,
            "report": self.report,
            "notes": self.notes,
        }


def collect_evidence(site: Site, tag: str) -> Evidence:
    """Link the registry's digest to a local image id and its recorded test; never raises.

    Test records are keyed by image id (``imgforge.verify.state``); the local image counts only
    when its RepoDigests include the registry's digest, so a rebuilt image with the same tag can
    never lend its results to what the cluster would pull.
    """
    ev = Evidence(f"{site.image}:{tag}")
    try:
        ev.digest = _registry_digest(site.image, tag)
        if ev.digest is None:
            ev.notes.append(f"tag {tag} is not in the registry")
    except ImgforgeError as e:
        ev.notes.append(f"registry digest unknown: {e}")
    local = _local_image(ev.reference, ev.notes)
    if local and ev.digest:
        image_id, repo_digests = local
        if any(d.endswith("@" + ev.digest) for d in repo_digests):
            ev.image_id = image_id
            ev.report = last_result(image_id)
            if ev.report is None:
                ev.notes.append("no `imgforge test` result is recorded for this image")
        else:
            ev.notes.append("the local image with this tag is not the registry's digest")
    elif ev.digest and not local:
        ev.notes.append("the image is not present locally, so no test record can be linked to it")
    return ev


def _registry_digest(image: str, tag: str) -> str | None:
    from imgforge.registry import RegistryClient, Repository

    repo = Repository.parse(image)
    with RegistryClient(repo.registry) as client:
        return client.manifest_digest(repo.name, tag)


def _local_image(reference: str, notes: list[str]) -> tuple[str, list[str]] | None:
    """(image id, RepoDigests) of the local image, or None (no engine, or no such image)."""
    import docker.errors

    from imgforge.engine import docker_client

    try:
        image = docker_client().images.get(reference)
    except ImgforgeError as e:  # no engine: say so, the evidence is only weaker
        notes.append(f"Docker: {e}")
        return None
    except docker.errors.ImageNotFound:
        return None
    except docker.errors.DockerException as e:
        notes.append(f"Docker: cannot inspect {reference}: {getattr(e, 'explanation', None) or e}")
        return None
    if not image.id:
        return None
    return image.id, list(image.attrs.get("RepoDigests") or [])
