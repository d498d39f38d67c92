"""ImageRef: the one parser of image references, checked against Docker's own normalisation rules."""

from __future__ import annotations

import pytest

from imgforge.image_ref import ImageRef


@pytest.mark.parametrize(
    ("text", "registry", "path", "tag", "digest"),
    [
        ("nginx", "docker.io", "library/nginx", None, None),
        ("nginx:1.27", "docker.io", "library/nginx", "1.27", None),
        ("docker.io/library/nginx:1.27", "docker.io", "library/nginx", "1.27", None),
        (
            "index.docker.io/nginxinc/nginx-unprivileged:1.27-alpine",
            "docker.io",
            "nginxinc/nginx-unprivileged",
            "1.27-alpine",
            None,
        ),
        ("127.0.0.1:5000/test/site", "127.0.0.1:5000", "test/site", None, None),
        (
            "127.0.0.1:5000/test/site:v0.0.1@sha256:" + "a" * 64,
            "127.0.0.1:5000",
            "test/site",
            "v0.0.1",
            "sha256:" + "a" * 64,
        ),
        ("localhost/x", "localhost", "x", None, None),
        ("cr.pcfae.com/prplanit/sofmeright.com:v0.0.5", "cr.pcfae.com", "prplanit/sofmeright.com", "v0.0.5", None),
        ("team/app@sha256:" + "b" * 64, "docker.io", "team/app", None, "sha256:" + "b" * 64),
    ],
)
def test_parse(text, registry, path, tag, digest):
    ref = ImageRef.parse(text)
    assert (ref.registry, ref.path, ref.tag, ref.digest) == (registry, path, tag, digest)
    assert str(ref) == text  # the spelling is kept


def test_spellings_of_one_repository_are_the_same():
    spellings = [
        "nginx",
        "docker.io/nginx",
        "docker.io/library/nginx:1",
        "index.docker.io/library/nginx@sha256:" + "c" * 64,
    ]
    refs = [ImageRef.parse(s) for s in spellings]
    assert {r.canonical for r in refs} == {"docker.io/library/nginx"}
    assert {r.familiar for r in refs} == {"nginx"}
    assert not refs[0].same_repository("cr.example.com/nginx")
    assert not ImageRef.parse("127.0.0.1:5000/a").same_repository("127.0.0.1:5001/a")


def test_api_host_and_replacements():
    assert ImageRef.parse("nginx").api_host == "registry-1.docker.io"
    assert ImageRef.parse("cr.example.com/a/b").api_host == "cr.example.com"
    ref = ImageRef.parse("cr.example.com/a/b:v1")
    assert str(ref.with_tag("v2").with_digest("sha256:" + "d" * 64)) == "cr.example.com/a/b:v2@sha256:" + "d" * 64
    assert str(ref.with_tag(None)) == "cr.example.com/a/b"
