"""The registry side: a v2 API client (``client``), its auth (``auth``), where credentials come
from (``credentials``) and which tags are versions (``versions``). Nothing here knows the catalog;
:mod:`imgforge.release` joins the two."""

from imgforge.registry.client import (
    AuthRejected,
    BadRequest,
    RegistryClient,
    RegistryUnavailable,
    Repository,
    RepositoryNotFound,
)
from imgforge.registry.credentials import Credentials
from imgforge.registry.versions import Version

__all__ = [
    "AuthRejected",
    "BadRequest",
    "Credentials",
    "RegistryClient",
    "RegistryUnavailable",
    "Repository",
    "RepositoryNotFound",
    "Version",
]
