"""What a server said, made fit to print: short, one line, no credentials, no control characters.

Registries and forges explain errors in their bodies, and some (or a proxy before them) echo the
request's headers there, ``Authorization`` included. CI logs are read by many, so a reason is
shown only after :func:`sanitize`: every secret the client holds is replaced by ``***`` (also
JSON- and URL-escaped, and a trailing piece of one where a capped body cut it), as is anything
shaped like a credential header, a ``Bearer``/``Basic`` value or a ``password=`` query; control
and bidirectional characters become spaces (no forged second line, no terminal escapes); the
result is cut at :data:`REASON_LENGTH` characters.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from urllib.parse import quote

from imgforge._http import Answer

REASON_LENGTH = 200  # characters of a server's explanation shown in a message


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")
_HEADER_LIKE = re.compile(
    r"(?i)\b(proxy-authorization|authorization|private-token|job-token|x-registry-auth|x-api-key|set-cookie|cookie)"
    r"""["']?\s*(?::|=|%3a)(?:\s|%20|\+)*["']?(?:(?:bearer|basic|token|negotiate|digest)(?:\s|%20|\+)+)?"""
    r"""[^\s"',;&]+"""
)
_SCHEME_VALUE = re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]{8,}")
_QUERY_SECRET = re.compile(r"(?i)\b(access_token|private_token|refresh_token|password|passwd|secret)=[^\s&\"',;]+")


def basic_value(username: str, password: str) -> str:
    """The base64 value of an HTTP basic ``Authorization`` header: a credential in its own right."""
    return base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def sanitize(text: str, secrets: Iterable[str] = (), limit: int = REASON_LENGTH) -> str:
    """``text`` as it may appear in a message: one line, every secret and anything shaped like
    a credential header replaced by ``***``, control characters gone, at most ``limit`` chars."""
    text = _CONTROL.sub(" ", text).strip()
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        for form in {secret, quote(secret, safe=""), json.dumps(secret)[1:-1], secret.replace("/", "\\/")}:
            text = text.replace(form, "***")
        for n in range(len(secret) - 1, 3, -1):  # a body cut short may end in part of a secret
            if text.endswith(secret[:n]):
                text = text[:-n] + "***"
                break
    text = _HEADER_LIKE.sub(lambda m: f"{m.group(1)}: ***", text)
    text = _SCHEME_VALUE.sub(r"\1\2***", text)
    text = _QUERY_SECRET.sub(r"\1=***", text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def error_detail(answer: Answer, secrets: Iterable[str] = (), *, text_fallback: bool = False) -> tuple[str, str]:
    """(code, reason) of an error answer, sanitized.

    ``code`` is the first entry's ``code`` of a Docker Registry v2 ``{"errors": [...]}`` body.
    ``reason`` joins ``message``/``error`` and each ``errors`` entry's ``message`` (or ``code``),
    the shapes of the v2 API, GitLab, GitHub and Gitea. A body that is not JSON gives its text
    when ``text_fallback`` is set, else nothing.
    """
    try:
        data = answer.json()
    except ValueError:
        return "", sanitize(answer.text, secrets) if text_fallback else ""
    if not isinstance(data, dict):
        return "", sanitize(str(data), secrets)
    parts: list[str] = []
    message = data.get("message") or data.get("error")
    if isinstance(message, list):
        message = "; ".join(map(str, message))
    if message:
        parts.append(str(message))
    code = ""
    errors = data.get("errors")
    for err in errors if isinstance(errors, list) else []:
        if isinstance(err, dict):
            code = code or str(err.get("code") or "")
            parts.append(str(err.get("message") or err.get("code") or err))
        else:
            parts.append(str(err))
    return sanitize(code, secrets, 60), sanitize("; ".join(parts), secrets)
