"""The one timestamp form the signing formats write: RFC 3339, UTC, second precision, ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime

from imgforge.errors import FormatError


def rfc3339(moment: datetime) -> str:
    """Accepted by in-toto, SLSA, SPDX 2.3 (``created``) and OCI config ``created`` alike."""
    if moment.tzinfo is None:
        raise FormatError("timestamps must be timezone-aware (a naive datetime has no known zone)")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
