"""The content manifest read back from an image: hostile input, refused with one line saying why."""

from __future__ import annotations

import hashlib
import json

import pytest

from imgforge.content_manifest import MAX_BYTES, ContentManifest, ServedFile, digest_of
from imgforge.errors import EXIT_NOT_FOUND, NotFound

GOOD = {
    "site": "web",
    "content_root": "/usr/share/nginx/html",
    "served": {"index.html": ServedFile(sha256="a" * 64, size=3), "css/a b.css": ServedFile(sha256="b" * 64, size=0)},
    "left_out": (".env", "mail.php"),
    "port": 8080,
    "fallback": "spa",
    "headers": (("X-Content-Type-Options", "nosniff"), ("Permissions-Policy", "camera=()")),
    "uid": 100,
    "gid": 101,
    "ipv6": "auto",
    "gzip": True,
    "cache_assets": True,
}


def _bytes(**changes: object) -> bytes:
    """The good manifest as JSON with fields changed, written the canonical way (so only the field is wrong)."""
    data = json.loads(ContentManifest.of(GOOD).to_bytes())
    data.update(changes)
    return (json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n").encode()


def test_round_trip_is_byte_exact_and_the_digest_is_of_the_bytes():
    manifest = ContentManifest.of(GOOD)
    data = manifest.to_bytes()
    assert ContentManifest.parse(data, "image x") == manifest
    assert manifest.digest == digest_of(data) == "sha256:" + hashlib.sha256(data).hexdigest()
    assert data.isascii()
    assert data.endswith(b"}\n")
    assert b" " not in data.replace(b"a b.css", b"")
    assert list(json.loads(data)) == sorted(json.loads(data))


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"{", "not valid JSON"),
        (_bytes(schema="something.else"), "not an imgforge content manifest"),
        (_bytes(version=2), "version 2, but this imgforge reads version 1"),
        (_bytes(served={"../../etc/passwd": {"sha256": "a" * 64, "size": 1}}), "not a path inside the web root"),
        (_bytes(served={"/etc/passwd": {"sha256": "a" * 64, "size": 1}}), "not a path inside the web root"),
        (_bytes(served={"a\nb.html": {"sha256": "a" * 64, "size": 1}}), "not a path inside the web root"),
        (_bytes(served={"a.html": {"sha256": "A" * 64, "size": 1}}), "sha256"),
        (_bytes(served={"a.html": {"sha256": "a" * 64, "size": -1}}), "served.a.html.size"),
        (_bytes(left_out=["x/./y"]), "not a path inside the web root"),
        (_bytes(content_root="/"), "not an absolute folder"),
        (_bytes(content_root="usr/share"), "not an absolute folder"),
        (_bytes(port=80), "port"),
        (_bytes(uid="100"), "uid"),
        (_bytes(uid=0), "uid"),
        (_bytes(fallback="index"), "fallback"),
        (_bytes(headers=[["X-A", "b\r\nSet-Cookie: x"]]), "headers"),
        (_bytes(headers=[["X A", "b"]]), "a header name"),
        (_bytes(site="Web/../x"), "a site name"),
        (_bytes(extra=1), "extra"),
        (ContentManifest.of(GOOD).to_bytes().replace(b',"gzip":true', b',"gzip":true,"gzip":true'), "canonical"),
        (ContentManifest.of(GOOD).to_bytes().rstrip(b"\n"), "canonical"),
        (json.dumps(json.loads(ContentManifest.of(GOOD).to_bytes()), indent=1).encode(), "canonical"),
        (b" " * (MAX_BYTES + 1), "larger than 64 MiB"),
    ],
)
def test_a_manifest_that_is_not_exactly_one_is_refused_in_one_line(data, why):
    with pytest.raises(NotFound) as err:
        ContentManifest.parse(data, "image x: /etc/imgforge/manifest.json")
    message = str(err.value)
    assert why in message, message
    assert message.startswith("image x: /etc/imgforge/manifest.json: ")
    assert "\n" not in message
    assert "\r" not in message
    assert err.value.exit_code == EXIT_NOT_FOUND


def test_the_build_side_is_checked_as_strictly_as_the_reading_side():
    with pytest.raises(ValueError, match="not a path inside the web root"):
        ContentManifest.of({**GOOD, "left_out": ("../x",)})
