"""The media types the reader accepts, grouped by what they may describe.

OCI and Docker's schema 2 spell the same three objects (index, manifest, config) and the same
layer tars differently; the reader accepts both spellings and refuses everything else, so an OCI
artifact (a signature, an SBOM, a Helm chart) is never mistaken for a runnable image.
"""

from __future__ import annotations

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)

OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})
LAYER_TYPES = frozenset(
    {
        OCI_LAYER,
        f"{OCI_LAYER}+gzip",
        f"{OCI_LAYER}+zstd",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    }
)

# What a manifest request asks for, most specific first (the registry's Accept header).
ACCEPT = (OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST)

# Annotations that name an image inside an OCI layout's index.json (OCI's tag-only form, and
# containerd's / Docker 25's full reference).
REF_NAME_ANNOTATIONS = ("org.opencontainers.image.ref.name", "io.containerd.image.name")
# BuildKit puts provenance/SBOM manifests in an index under platform unknown/unknown.
ATTESTATION_ANNOTATION = "vnd.docker.reference.type"
