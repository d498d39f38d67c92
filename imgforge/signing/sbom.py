"""The image's SBOM as an SPDX 2.3 JSON document, and what changed between two of them.

SPDX 2.3 because it is what Chainguard and ko ship, cosign attests it as ``https://spdx.dev/Document``,
and spdx-tools (the SPDX project's own library) validates it in the tests. The document describes
one package, the image (``primaryPackagePurpose: CONTAINER``, its manifest digest and an ``oci``
purl), which CONTAINS every OS package (with its ``deb``/``apk`` purl) and a "site content" package
that CONTAINS every content file with its SHA-1 (SPDX requires it) and SHA-256 (what imgforge
compares). Output is deterministic: everything is sorted, ``documentNamespace`` is derived from
the digest, ``created`` is passed in, and element ids come from names, not from positions.

``sbom_diff`` compares two such documents (any SPDX 2.x JSON with purls and file SHA-256s) for a
merge request: packages added, removed and changed, content files added, removed and changed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from debian.debian_support import Version
from packageurl import PackageURL

from imgforge.errors import FormatError
from imgforge.signing._time import rfc3339
from imgforge.signing.oci import digest_hex
from imgforge.signing.ospkg import OsPackage

NAMESPACE_BASE = "https://imgforge.io/spdx"
IMAGE_ID = "SPDXRef-Image"
CONTENT_ID = "SPDXRef-Content"
_HEX40 = re.compile(r"[a-f0-9]{40}")
_HEX64 = re.compile(r"[a-f0-9]{64}")
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")


@dataclass(frozen=True, order=True)
class ContentFile:
    """One file of the site content as it is in the image (path relative to the image root)."""

    path: str
    sha256: str
    sha1: str

    @classmethod
    def from_bytes(cls, path: str, data: bytes) -> ContentFile:
        return cls(path, hashlib.sha256(data).hexdigest(), hashlib.sha1(data, usedforsecurity=False).hexdigest())


def spdx_document(
    *,
    name: str,
    image_digest: str,
    packages: Iterable[OsPackage],
    files: Iterable[ContentFile],
    created: datetime,
    tool_version: str,
    repository: str | None = None,
) -> dict[str, Any]:
    """The SPDX 2.3 document for the image ``name`` at ``image_digest``."""
    hex_digest = digest_hex(image_digest, "image digest")
    if not name:
        raise FormatError("SBOM: the document needs a name (the image repository)")
    pkgs = sorted(set(packages))
    content = _checked_files(files)
    image_pkg: dict[str, Any] = {
        "SPDXID": IMAGE_ID,
        "name": name,
        "versionInfo": image_digest,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": False,
        "primaryPackagePurpose": "CONTAINER",
        "checksums": [{"algorithm": "SHA256", "checksumValue": hex_digest}],
        "externalRefs": [_purl_ref(_image_purl(name, image_digest, repository))],
    }
    content_pkg: dict[str, Any] = {
        "SPDXID": CONTENT_ID,
        "name": "site content",
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": True,
        "primaryPackagePurpose": "FILE",
        "packageVerificationCode": {"packageVerificationCodeValue": _verification_code(content)},
    }
    os_pkgs: list[dict[str, Any]] = []
    relationships = [_rel("SPDXRef-DOCUMENT", "DESCRIBES", IMAGE_ID), _rel(IMAGE_ID, "CONTAINS", CONTENT_ID)]
    for pkg in pkgs:
        spdx_id = _element_id("Package", pkg.purl)
        entry: dict[str, Any] = {
            "SPDXID": spdx_id,
            "name": pkg.name,
            "versionInfo": pkg.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": False,
            "externalRefs": [_purl_ref(pkg.purl)],
        }
        if pkg.source:
            entry["sourceInfo"] = f"built from source package {pkg.source}"
        os_pkgs.append(entry)
        relationships.append(_rel(IMAGE_ID, "CONTAINS", spdx_id))
    spdx_files = []
    for f in content:
        spdx_id = _element_id("File", f.path)
        spdx_files.append(
            {
                "SPDXID": spdx_id,
                "fileName": f"./{f.path}",
                "checksums": [
                    {"algorithm": "SHA1", "checksumValue": f.sha1},
                    {"algorithm": "SHA256", "checksumValue": f.sha256},
                ],
            }
        )
        relationships.append(_rel(CONTENT_ID, "CONTAINS", spdx_id))
    return {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": name,
        "documentNamespace": f"{NAMESPACE_BASE}/{quote(name, safe='')}/sha256-{hex_digest}",
        "creationInfo": {"created": rfc3339(created), "creators": [f"Tool: imgforge-{tool_version}"]},
        "packages": [image_pkg, content_pkg, *os_pkgs],
        "files": spdx_files,
        "relationships": relationships,
    }


@dataclass(frozen=True)
class VersionChange:
    purl_type: str
    name: str
    arch: str
    old: str
    new: str
    direction: str  # "upgrade", "downgrade", or "changed" where no ordering is known (apk)


@dataclass(frozen=True)
class SbomDiff:
    packages_added: list[str] = field(default_factory=list)  # purls
    packages_removed: list[str] = field(default_factory=list)
    packages_changed: list[VersionChange] = field(default_factory=list)
    files_added: list[str] = field(default_factory=list)  # paths
    files_removed: list[str] = field(default_factory=list)
    files_changed: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not any(asdict(self).values())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sbom_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> SbomDiff:
    """What differs between two SPDX JSON documents: OS packages by purl, files by SHA-256."""
    old_pkgs, new_pkgs = _packages(old, "old SBOM"), _packages(new, "new SBOM")
    old_files, new_files = _files(old, "old SBOM"), _files(new, "new SBOM")
    changed = []
    for key in sorted(old_pkgs.keys() & new_pkgs.keys()):
        before, after = old_pkgs[key], new_pkgs[key]
        if before.version != after.version:
            changed.append(
                VersionChange(
                    key[0],
                    key[2],
                    key[3],
                    str(before.version),
                    str(after.version),
                    _direction(key[0], str(before.version), str(after.version)),
                )
            )
    return SbomDiff(
        packages_added=sorted(new_pkgs[k].to_string() for k in new_pkgs.keys() - old_pkgs.keys()),
        packages_removed=sorted(old_pkgs[k].to_string() for k in old_pkgs.keys() - new_pkgs.keys()),
        packages_changed=changed,
        files_added=sorted(new_files.keys() - old_files.keys()),
        files_removed=sorted(old_files.keys() - new_files.keys()),
        files_changed=sorted(p for p in old_files.keys() & new_files.keys() if old_files[p] != new_files[p]),
    )


def _packages(doc: Mapping[str, Any], what: str) -> dict[tuple[str, str, str, str], PackageURL]:
    """OS packages keyed by (type, namespace, name, arch); the image's own ``oci`` purl is skipped."""
    out = {}
    for pkg in _list(doc, "packages", what):
        for ref in pkg.get("externalRefs", []) if isinstance(pkg, dict) else []:
            if not isinstance(ref, dict) or ref.get("referenceType") != "purl":
                continue
            try:
                purl = PackageURL.from_string(str(ref.get("referenceLocator")))
            except ValueError as e:
                raise FormatError(f"{what}: package {pkg.get('name')!r}: bad purl") from e
            if purl.type == "oci":
                continue
            arch = (purl.qualifiers or {}).get("arch", "") if isinstance(purl.qualifiers, dict) else ""
            out[(purl.type, purl.namespace or "", purl.name, arch)] = purl
    return out


def _files(doc: Mapping[str, Any], what: str) -> dict[str, str]:
    out = {}
    for f in _list(doc, "files", what):
        if not isinstance(f, dict) or not isinstance(f.get("fileName"), str):
            raise FormatError(f"{what}: files: entry without a fileName")
        sums = {c.get("algorithm"): c.get("checksumValue") for c in f.get("checksums", []) if isinstance(c, dict)}
        path = f["fileName"][2:] if f["fileName"].startswith("./") else f["fileName"]
        out[path] = str(sums.get("SHA256") or sums.get("SHA1") or "")
    return out


def _list(doc: Mapping[str, Any], key: str, what: str) -> list[Any]:
    value = doc.get(key, []) if isinstance(doc, Mapping) else None
    if not isinstance(value, list):
        raise FormatError(f"{what}: {key}: expected a list")
    return value


def _direction(purl_type: str, old: str, new: str) -> str:
    if purl_type != "deb":
        return "changed"  # apk has its own ordering rules; we do not guess them
    try:
        return "upgrade" if Version(new) > Version(old) else "downgrade"
    except ValueError:
        return "changed"


def _checked_files(files: Iterable[ContentFile]) -> list[ContentFile]:
    out: dict[str, ContentFile] = {}
    for f in files:
        path = f.path.lstrip("/")
        path = path[2:] if path.startswith("./") else path
        if not path or "\0" in path or any(part in ("", ".", "..") for part in path.split("/")):
            raise FormatError(f"SBOM: content file path {f.path!r:.120}: expected a relative path")
        if not _HEX64.fullmatch(f.sha256) or not _HEX40.fullmatch(f.sha1):
            raise FormatError(f"SBOM: content file {path!r:.120}: expected lowercase hex SHA-256 and SHA-1")
        if path in out:
            raise FormatError(f"SBOM: content file {path!r:.120} is listed twice")
        out[path] = ContentFile(path, f.sha256, f.sha1)
    return [out[p] for p in sorted(out)]


def _verification_code(files: list[ContentFile]) -> str:
    """SPDX 2.3 §7.9: SHA-1 over the sorted, concatenated SHA-1s of the package's files."""
    return hashlib.sha1("".join(sorted(f.sha1 for f in files)).encode("ascii"), usedforsecurity=False).hexdigest()


def _image_purl(name: str, image_digest: str, repository: str | None) -> str:
    last = name.rsplit("/", 1)[-1]
    qualifiers = {"repository_url": repository} if repository else {}
    return PackageURL(type="oci", name=last, version=image_digest, qualifiers=qualifiers).to_string()


def _purl_ref(purl: str) -> dict[str, str]:
    return {"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": purl}


def _element_id(kind: str, key: str) -> str:
    """A stable, unique SPDXID: a readable part plus 12 hex of the key's sha256 (no collisions by name)."""
    readable = _ID_UNSAFE.sub("-", key.rsplit("/", 1)[-1].split("?")[0])[:48].strip("-") or "x"
    return f"SPDXRef-{kind}-{readable}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def _rel(a: str, kind: str, b: str) -> dict[str, str]:
    return {"spdxElementId": a, "relationshipType": kind, "relatedSpdxElement": b}
