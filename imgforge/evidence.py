"""Evidence for a merge request, taken from the registry: the tag's digest, verified with a key.

A worker: it joins the registry (datasource) and the proof checks. Nothing local counts: the tag
is resolved to its digest (the manifest fetched and hashed here), and that digest's signature and
attestations are verified with the configured public key (``--key``, IMGFORGE_SIGNING_KEY_PUB or
``[signing] public_key``), so a request opened by CI on a fresh runner is as verified as one opened
on the machine that built the image. When the GitOps repo deploys another tag now, its SBOM (if
signed by the same key) is compared with the new one: packages added, removed, upgraded; content
files changed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from imgforge.config import Site
from imgforge.errors import ImgforgeError

if TYPE_CHECKING:
    from imgforge.proof import VerifyingKey
    from imgforge.registry import RegistryClient

NO_KEY = "no public key to verify with (--key, IMGFORGE_SIGNING_KEY_PUB or [signing] public_key in imgforge.toml)"


@dataclass
class Evidence:
    """What proves the image, as read from the registry and checked with a key."""

    reference: str  # image:tag
    digest: str | None = None
    key_fingerprint: str | None = None
    key_source: str | None = None
    facts: list[dict[str, Any]] = field(default_factory=list)  # name, ok, detail (proof.check.Fact)
    report: dict[str, Any] | None = None  # the verified test attestation's predicate
    deployed: str | None = None  # image:tag@digest the GitOps repo runs now
    sbom_diff: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return bool(self.facts) and all(f["ok"] for f in self.facts)

    @property
    def reasons(self) -> list[str]:
        """Why it is not verified: the failing facts, else the notes."""
        failed = [f"{f['name']}: {f['detail']}" for f in self.facts if not f["ok"]]
        return failed or self.notes or ["nothing was verified"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "digest": self.digest,
            "verified": self.verified,
            "key_fingerprint": f"sha256:{self.key_fingerprint}" if self.key_fingerprint else None,
            "key_source": self.key_source,
            "facts": self.facts,
            "tested": self.report is not None,
            "report": self.report,
            "deployed": self.deployed,
            "sbom_diff": self.sbom_diff,
            "notes": self.notes,
        }


def collect_evidence(site: Site, tag: str, deployed_tag: str | None = None, *, key: VerifyingKey | None) -> Evidence:
    """Resolve ``tag`` to its digest and verify it with ``key``; never raises (failures become notes)."""
    from imgforge.proof import check
    from imgforge.registry import ManifestNotFound, RegistryClient, Repository

    ev = Evidence(f"{site.image}:{tag}")
    repo = Repository.parse(site.image)
    try:
        with RegistryClient(repo.registry) as client:
            try:
                ev.digest = client.get_manifest(repo.name, tag)[2]
            except ManifestNotFound:
                ev.notes.append(f"tag {tag} is not in the registry")
                return ev
            if key is None:
                ev.notes.append(NO_KEY)
                return ev
            ev.key_fingerprint, ev.key_source = key.fingerprint, key.source
            trust = check.verify_digest(client, repo.name, ev.digest, key, content=False)
            ev.facts = [asdict(f) for f in trust.facts]
            ev.report = trust.test_report
            if deployed_tag and deployed_tag != tag and trust.sbom is not None:
                _diff_against(ev, client, repo.name, site.image, deployed_tag, key, trust.sbom)
    except ImgforgeError as e:
        ev.notes.append(f"registry: {e}")
    return ev


def _diff_against(
    ev: Evidence, client: RegistryClient, name: str, image: str, deployed_tag: str, key: VerifyingKey, new: Any
) -> None:
    from imgforge.errors import ManifestNotFound
    from imgforge.proof import check
    from imgforge.signing.sbom import sbom_diff

    try:
        digest = client.get_manifest(name, deployed_tag)[2]
    except ManifestNotFound:
        ev.notes.append(f"the deployed tag {deployed_tag} is not in the registry: no SBOM diff")
        return
    ev.deployed = f"{image}:{deployed_tag}@{digest}"
    old = check.verified_predicate(client, name, digest, key, "sbom")
    if old is None:
        ev.notes.append(f"the deployed {deployed_tag} has no SBOM signed by this key: no SBOM diff")
        return
    ev.sbom_diff = sbom_diff(old, new).to_dict()
