"""The OCI objects cosign stores beside an image, built as bytes a registry client can upload.

cosign's "legacy" layout (the one every verifier reads, and the only one a registry without the
OCI 1.1 referrers API can hold) keeps signatures and attestations as small images tagged after the
signed manifest's digest: ``sha256-<hex>.sig`` and ``sha256-<hex>.att``. Each is an OCI image
manifest whose config is the image config go-containerregistry's ``empty.Image`` grows when cosign
appends layers (``pkg/oci/empty``, ``pkg/oci/mutate``), and whose layers are the payloads:

- ``.sig``: ``application/vnd.dev.cosign.simplesigning.v1+json`` layers holding a simple-signing
  payload, the base64 signature in the ``dev.cosignproject.cosign/signature`` annotation;
- ``.att``: ``application/vnd.dsse.envelope.v1+json`` layers holding a DSSE envelope, with that
  annotation present but empty (``static.NewAttestation``) and ``predicateType`` beside it.

The JSON is serialized as Go writes it (struct order, sorted annotation keys) and the config's
``created`` is the zero time cosign leaves there unless asked to record one, so the same
payloads always give the same manifest digest.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from imgforge.errors import FormatError
from imgforge.signing._json import go_json, sorted_map
from imgforge.signing._time import rfc3339

OCI_MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
SIMPLE_SIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE_MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
PREDICATE_TYPE_ANNOTATION = "predicateType"
ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time.Time, as v1.Time marshals it

_SHA256 = re.compile(r"sha256:([a-f0-9]{64})")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def digest_hex(digest: str, what: str = "manifest digest") -> str:
    """The hex of a ``sha256:<64 lowercase hex>`` digest; anything else is a FormatError."""
    match = _SHA256.fullmatch(digest) if isinstance(digest, str) else None
    if match is None:
        raise FormatError(f"{what}: expected sha256:<64 lowercase hex>, got {digest!r:.80}")
    return match.group(1)


def signature_tag(manifest_digest: str) -> str:
    """``sha256-<hex>.sig``: where cosign looks for the signatures of ``manifest_digest``."""
    return f"sha256-{digest_hex(manifest_digest)}.sig"


def attestation_tag(manifest_digest: str) -> str:
    """``sha256-<hex>.att``: where cosign looks for the attestations of ``manifest_digest``."""
    return f"sha256-{digest_hex(manifest_digest)}.att"


@dataclass(frozen=True)
class Layer:
    media_type: str
    data: bytes = field(repr=False)
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return sha256_digest(self.data)

    def descriptor(self) -> dict[str, object]:
        desc: dict[str, object] = {"mediaType": self.media_type, "size": len(self.data), "digest": self.digest}
        if self.annotations:
            desc["annotations"] = sorted_map(dict(self.annotations))
        return desc


@dataclass(frozen=True)
class Artifact:
    """A ``.sig`` or ``.att`` image: upload ``blobs()`` first, then ``manifest`` under its tag."""

    manifest: bytes = field(repr=False)
    config: bytes = field(repr=False)
    layers: tuple[Layer, ...]
    media_type: str = OCI_MANIFEST_MEDIA_TYPE

    @property
    def manifest_digest(self) -> str:
        return sha256_digest(self.manifest)

    @property
    def config_digest(self) -> str:
        return sha256_digest(self.config)

    def blobs(self) -> dict[str, bytes]:
        """Every blob the manifest references, by digest (the config and each layer)."""
        out = {self.config_digest: self.config}
        out.update((layer.digest, layer.data) for layer in self.layers)
        return out


def signature_layer(payload: bytes, b64_signature: str) -> Layer:
    """One signature: the simple-signing payload, its base64 signature in the annotation."""
    return Layer(SIMPLE_SIGNING_MEDIA_TYPE, payload, {SIGNATURE_ANNOTATION: b64_signature})


def attestation_layer(envelope: bytes, predicate_type: str) -> Layer:
    """One attestation: a DSSE envelope, annotated as ``cosign attest`` annotates it."""
    return Layer(DSSE_MEDIA_TYPE, envelope, {SIGNATURE_ANNOTATION: "", PREDICATE_TYPE_ANNOTATION: predicate_type})


def cosign_artifact(layers: Sequence[Layer], created: datetime | str = ZERO_TIME) -> Artifact:
    """The image cosign writes for ``layers`` (config, then manifest), in Go's serialization."""
    if not layers:
        raise FormatError("a cosign signature or attestation image needs at least one layer")
    stamp = created if isinstance(created, str) else rfc3339(created)
    config = go_json(
        {
            "architecture": "",
            "created": stamp,
            "history": [{"created": ZERO_TIME} for _ in layers],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": [layer.digest for layer in layers]},
            "config": {},
        }
    )
    manifest = go_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST_MEDIA_TYPE,
            "config": {"mediaType": OCI_CONFIG_MEDIA_TYPE, "size": len(config), "digest": sha256_digest(config)},
            "layers": [layer.descriptor() for layer in layers],
        }
    )
    return Artifact(manifest, config, tuple(layers))


@dataclass(frozen=True)
class LayerRef:
    """A layer as a manifest describes it: enough to fetch the blob and check what it claims."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str]


def read_layers(manifest: bytes, source: str = "manifest") -> list[LayerRef]:
    """The layers of a ``.sig``/``.att`` manifest fetched from a registry (hostile until checked)."""
    try:
        doc = json.loads(manifest)
    except (ValueError, UnicodeDecodeError) as e:
        raise FormatError(f"{source}: not JSON") from e
    layers = doc.get("layers") if isinstance(doc, dict) else None
    if not isinstance(layers, list):
        raise FormatError(f"{source}: layers: missing or not a list")
    out = []
    for i, desc in enumerate(layers):
        where = f"{source}: layers[{i}]"
        if not isinstance(desc, dict) or not isinstance(desc.get("mediaType"), str):
            raise FormatError(f"{where}: mediaType missing")
        size, annotations = desc.get("size"), desc.get("annotations", {})
        if type(size) is not int or size < 0:
            raise FormatError(f"{where}: size: expected a non-negative integer")
        if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
            raise FormatError(f"{where}: annotations: expected string values")
        digest_hex(desc.get("digest"), f"{where}.digest")  # type: ignore[arg-type]
        out.append(LayerRef(desc["mediaType"], desc["digest"], size, dict(annotations)))
    return out
