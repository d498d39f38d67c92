"""Small OCI objects for the registry tests, built as bytes the way any OCI client writes them."""

from __future__ import annotations

import hashlib
import json
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
EMPTY = b"{}"  # the OCI image spec's empty descriptor content
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest(data), "size": len(data), **extra}


def manifest(
    config: tuple[str, bytes],
    layers: list[tuple[str, bytes]],
    *,
    subject: dict[str, Any] | None = None,
    artifact_type: str | None = None,
    annotations: dict[str, str] | None = None,
) -> bytes:
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST}
    if artifact_type:
        doc["artifactType"] = artifact_type
    doc["config"] = descriptor(*config)
    doc["layers"] = [descriptor(t, d) for t, d in layers]
    if subject:
        doc["subject"] = subject
    if annotations:
        doc["annotations"] = annotations
    return json.dumps(doc).encode()


def image_config(text: str) -> bytes:
    return json.dumps(
        {"architecture": "amd64", "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": [text]}}
    ).encode()
