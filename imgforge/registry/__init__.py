"""The registry side: a v2 API client (``client``, its call groups ``manifests``, ``blobs``,
``referrers`` over the funnel in ``api``), its auth (``auth``), where credentials come from
(``credentials``) and which tags are versions (``versions``). Nothing here knows the catalog;
:mod:`imgforge.release` joins the two."""

from imgforge.registry.client import (
    Attached,
    AuthRejected,
    BadRequest,
    BlobNotFound,
    DigestMismatch,
    ManifestNotFound,
    RegistryClient,
    RegistryUnavailable,
    Repository,
    RepositoryNotFound,
    referrers_tag,
)
from imgforge.registry.credentials import Credentials
from imgforge.registry.versions import Version

__all__ = [
    "Attached",
    "AuthRejected",
    "BadRequest",
    "BlobNotFound",
    "Credentials",
    "DigestMismatch",
    "ManifestNotFound",
    "RegistryClient",
    "RegistryUnavailable",
    "Repository",
    "RepositoryNotFound",
    "Version",
    "referrers_tag",
]
