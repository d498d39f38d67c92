"""Manifest, index and config resolution from hand-made OCI layouts: strict checks and platforms.

Each strictness test changes one byte or field of an otherwise valid layout, so it fails the day
the check it names is removed.
"""

from __future__ import annotations

import json
import os

import pytest
from image_fixtures import LayoutWriter, sha, single, tar_of

from imgforge.errors import ImageRefused
from imgforge.image import (
    ImageInvalid,
    ImageNotFound,
    ImageUnsupported,
    LimitExceeded,
    Limits,
    OciLayout,
    PlatformNotFound,
    resolve,
)

LAYER = tar_of(("dir", "etc/"), ("file", "etc/hello", b"hi\n"))
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _blob_path(writer: LayoutWriter, digest: str):
    return writer.root / "blobs" / "sha256" / digest.split(":")[1]


def _manifest_of(writer: LayoutWriter) -> tuple[dict, dict]:
    index = json.loads((writer.root / "index.json").read_text())
    desc = index["manifests"][0]
    return desc, json.loads(_blob_path(writer, desc["digest"]).read_bytes())


def _rewrite_manifest(writer: LayoutWriter, change) -> None:
    """Store a changed manifest as a new blob and point index.json at it (so only ``change`` differs)."""
    desc, manifest = _manifest_of(writer)
    change(manifest)
    digest, size = writer.blob(json.dumps(manifest).encode())
    writer.index([{**desc, "digest": digest, "size": size}])


def test_single_image_config_fields(layout):
    single(
        layout,
        LAYER,
        config={
            "config": {
                "User": "101:101",
                "ExposedPorts": {"8080/tcp": {}, "8443/tcp": {}},
                "Env": ["A=1", "B=x=y"],
                "Entrypoint": ["/docker-entrypoint.sh"],
                "Cmd": None,
                "StopSignal": "SIGQUIT",
                "WorkingDir": "/srv",
                "Labels": {"org.opencontainers.image.title": "t"},
            },
            "history": [{"created_by": "COPY x", "empty_layer": False}],
        },
    )
    image = resolve(OciLayout.open_dir(layout.root))
    c = image.config
    assert (c.user, c.exposed_ports, c.env_map, c.entrypoint, c.cmd, c.stop_signal, c.working_dir) == (
        "101:101",
        ("8080/tcp", "8443/tcp"),
        {"A": "1", "B": "x=y"},
        ("/docker-entrypoint.sh",),
        None,
        "SIGQUIT",
        "/srv",
    )
    assert c.labels == {"org.opencontainers.image.title": "t"}
    assert c.history[0].created_by == "COPY x"
    assert c.diff_ids == (sha(LAYER),)
    assert str(image.platform) == "linux/amd64"
    desc, _ = _manifest_of(layout)
    assert image.digest == desc["digest"]
    assert image.index_digest is not None


def test_reference_by_name_and_by_digest(layout):
    a = layout.image([LAYER])
    b = layout.image([tar_of(("file", "other", b"2"))])
    layout.index(
        [
            {**a, "annotations": {"org.opencontainers.image.ref.name": "a"}},
            {**b, "annotations": {"io.containerd.image.name": "docker.io/library/b:1"}},
        ]
    )
    source = OciLayout.open_dir(layout.root)
    assert resolve(source, "a").digest == a["digest"]
    assert resolve(source, "docker.io/library/b:1").digest == b["digest"]
    assert resolve(source, b["digest"]).digest == b["digest"]
    with pytest.raises(ImageNotFound, match=r"several images"):
        resolve(source)
    with pytest.raises(ImageNotFound, match=r"no image named 'c' \(names: a, docker.io/library/b:1\)"):
        resolve(source, "c")


def test_tampered_config_is_refused(layout):
    single(layout, LAYER)
    _, manifest = _manifest_of(layout)
    path = _blob_path(layout, manifest["config"]["digest"])
    path.write_bytes(path.read_bytes().replace(b"101:101", b"0:00000"))  # same size, other bytes
    with pytest.raises(ImageInvalid, match=r"content digest is sha256:.*expected"):
        resolve(OciLayout.open_dir(layout.root))


def test_tampered_manifest_is_refused(layout):
    single(layout, LAYER)
    desc, _ = _manifest_of(layout)
    path = _blob_path(layout, desc["digest"])
    path.write_bytes(path.read_bytes().replace(b'"schemaVersion": 2', b'"schemaVersion":  2'))
    with pytest.raises(ImageInvalid, match=r"bytes served, the descriptor says"):
        resolve(OciLayout.open_dir(layout.root))
    layout.index([{**desc, "size": desc["size"] + 1}])  # size now right, digest still the old one
    with pytest.raises(ImageInvalid, match=r"content digest is"):
        resolve(OciLayout.open_dir(layout.root))


def test_served_digest_of_a_reference_must_match(layout):
    single(layout, LAYER)
    desc, _ = _manifest_of(layout)
    with pytest.raises(ImageNotFound, match=r"is missing"):
        resolve(OciLayout.open_dir(layout.root), sha(b"something else"))
    os.link(_blob_path(layout, desc["digest"]), _blob_path(layout, sha(b"x")))
    with pytest.raises(ImageInvalid, match="expected " + sha(b"x")):
        resolve(OciLayout.open_dir(layout.root), sha(b"x"))


def test_media_types_are_checked(layout):
    single(layout, LAYER)
    desc, _ = _manifest_of(layout)
    layout.index([{**desc, "mediaType": "application/vnd.oci.image.index.v1+json"}])
    with pytest.raises(
        ImageInvalid,
        match=r"served as application/vnd.oci.image.index.v1\+json but its "
        r"mediaType says application/vnd.oci.image.manifest.v1\+json",
    ):
        resolve(OciLayout.open_dir(layout.root))


def test_artifact_and_unknown_layer_types_are_refused(layout):
    single(layout, LAYER)
    _rewrite_manifest(layout, lambda m: m["config"].update(mediaType="application/vnd.oci.empty.v1+json"))
    with pytest.raises(ImageInvalid, match=r"not a container image"):
        resolve(OciLayout.open_dir(layout.root))
    single(layout, LAYER)
    _rewrite_manifest(
        layout, lambda m: m["layers"][0].update(mediaType="application/vnd.cncf.helm.chart.content.v1.tar+gzip")
    )
    with pytest.raises(ImageInvalid, match=r"layers.0: media type .* is not an image layer"):
        resolve(OciLayout.open_dir(layout.root))


def test_schema1_is_unsupported(layout):
    digest, size = layout.blob(b'{"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []}')
    layout.index(
        [{"mediaType": "application/vnd.docker.distribution.manifest.v1+prettyjws", "digest": digest, "size": size}]
    )
    with pytest.raises(ImageUnsupported, match=r"schema 1"):  # what an old registry serves for a tag
        resolve(OciLayout.open_dir(layout.root), digest)


def test_malformed_fields_name_the_field(layout):
    single(layout, LAYER)
    _rewrite_manifest(layout, lambda m: m["layers"][0].update(size=str(m["layers"][0]["size"])))
    with pytest.raises(ImageInvalid, match=r"layers.0.size: Input should be a valid integer"):
        resolve(OciLayout.open_dir(layout.root))
    single(layout, LAYER)
    _rewrite_manifest(layout, lambda m: m["layers"][0].update(digest="sha256:../../../../etc/passwd"))
    with pytest.raises(ImageInvalid, match=r"layers.0.digest: String should match pattern"):
        resolve(OciLayout.open_dir(layout.root))


def test_diff_ids_must_match_the_layers(layout):
    single(layout, LAYER, diff_ids=[sha(LAYER), sha(b"extra")])
    with pytest.raises(ImageInvalid, match=r"rootfs.diff_ids has 2 entries for 1 layers"):
        resolve(OciLayout.open_dir(layout.root))


def test_manifest_and_config_caps(layout):
    single(layout, LAYER)
    desc, _ = _manifest_of(layout)
    with pytest.raises(LimitExceeded, match=r"max_config_bytes=100"):
        resolve(OciLayout.open_dir(layout.root), limits=Limits(max_config_bytes=100))
    with pytest.raises(LimitExceeded, match=r"max_manifest_bytes=200"):
        resolve(OciLayout.open_dir(layout.root), desc["digest"], limits=Limits(max_manifest_bytes=200))
    # A declared size over the cap is refused before a byte is read (the blob is not even there).
    layout.index(
        [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": sha(b"big"), "size": 5 * 1024 * 1024}]
    )
    with pytest.raises(LimitExceeded, match=r"declared size 5242880 exceeds the limit max_manifest_bytes=4194304"):
        resolve(OciLayout.open_dir(layout.root))
    (layout.root / "index.json").write_bytes(b" " * (4 * 1024 * 1024 + 1))
    with pytest.raises(LimitExceeded, match=r"index.json: document size"):
        OciLayout.open_dir(layout.root)


def test_layer_count_cap(layout):
    single(layout, LAYER, LAYER)
    with pytest.raises(LimitExceeded, match=r"2 layers exceeds the limit max_layers=1"):
        resolve(OciLayout.open_dir(layout.root), limits=Limits(max_layers=1))


def _multi(layout: LayoutWriter) -> dict[str, str]:
    """An index with five platforms and a BuildKit attestation; returns platform → manifest digest."""
    plats = {
        "linux/amd64": ("amd64", ""),
        "linux/arm64/v8": ("arm64", "v8"),
        "linux/arm/v7": ("arm", "v7"),
        "linux/arm/v6": ("arm", "v6"),
        "linux/ppc64le": ("ppc64le", ""),
    }
    entries, digests = [], {}
    for name, (arch, variant) in plats.items():
        desc = layout.image([tar_of(("file", "arch", name.encode()))], arch=arch, variant=variant)
        digests[name] = desc["digest"]
        entries.append(
            {**desc, "platform": {"os": "linux", "architecture": arch, **({"variant": variant} if variant else {})}}
        )
    att = layout.image([tar_of(("file", "sbom", b"{}"))], arch="unknown")
    entries.append(
        {
            **att,
            "platform": {"os": "unknown", "architecture": "unknown"},
            "annotations": {"vnd.docker.reference.type": "attestation-manifest"},
        }
    )
    layout.index(entries)
    return digests


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        (None, "linux/amd64"),
        ("linux/amd64", "linux/amd64"),
        ("linux/arm64", "linux/arm64/v8"),
        ("linux/arm64/v8", "linux/arm64/v8"),
        ("linux/aarch64", "linux/arm64/v8"),
        ("linux/arm", "linux/arm/v7"),
        ("linux/arm/v6", "linux/arm/v6"),
        ("linux/ppc64le", "linux/ppc64le"),
    ],
)
def test_platform_selection(layout, wanted, expected):
    digests = _multi(layout)
    image = resolve(OciLayout.open_dir(layout.root), platform=wanted)
    assert image.digest == digests[expected]
    assert image.index_digest is not None
    assert len(image.available_platforms) == 5


def test_no_matching_platform_lists_what_is_there(layout):
    _multi(layout)
    with pytest.raises(PlatformNotFound) as caught:
        resolve(OciLayout.open_dir(layout.root), platform="linux/s390x")
    assert str(caught.value).endswith(
        "no image for platform linux/s390x (available: linux/amd64, "
        "linux/arm/v6, linux/arm/v7, linux/arm64/v8, linux/ppc64le)"
    )
    with pytest.raises(PlatformNotFound, match=r"linux/arm/v5"):
        resolve(OciLayout.open_dir(layout.root), platform="linux/arm/v5")


def test_single_platform_image_and_explicit_platform(layout):
    single(layout, LAYER, arch="arm64")
    source = OciLayout.open_dir(layout.root)
    assert str(resolve(source).platform) == "linux/arm64"  # default: whatever the one image is
    with pytest.raises(PlatformNotFound, match=r"available: linux/arm64"):
        resolve(source, platform="linux/amd64")


def test_nested_index_and_entries_without_platform(layout):
    amd = layout.image([LAYER], arch="amd64")
    arm = layout.image([LAYER], arch="arm64", variant="v8")
    inner = layout.index([amd, arm], as_blob=True)  # no platform fields: read from each config
    layout.index([inner])
    source = OciLayout.open_dir(layout.root)
    assert resolve(source, platform="linux/arm64").digest == arm["digest"]
    assert resolve(source).digest == amd["digest"]
    with pytest.raises(LimitExceeded, match=r"max_index_depth=1"):
        resolve(source, limits=Limits(max_index_depth=1))


def test_index_platform_must_agree_with_config(layout):
    arm = layout.image([LAYER], arch="arm64")
    layout.index([{**arm, "platform": {"os": "linux", "architecture": "amd64"}}])
    with pytest.raises(ImageInvalid, match=r"index says linux/amd64 but its config says linux/arm64"):
        resolve(OciLayout.open_dir(layout.root))


def test_layout_marker_and_missing_blobs(layout):
    single(layout, LAYER)
    _, manifest = _manifest_of(layout)
    _blob_path(layout, manifest["config"]["digest"]).unlink()
    with pytest.raises(ImageNotFound, match=r"blob sha256:.* is missing"):
        resolve(OciLayout.open_dir(layout.root))
    (layout.root / "oci-layout").write_text('{"imageLayoutVersion": "2.0.0"}')
    with pytest.raises(ImageInvalid, match=r"imageLayoutVersion '2.0.0' is not 1.0.0"):
        OciLayout.open_dir(layout.root)
    with pytest.raises(ImageNotFound, match=r"not an OCI image layout"):
        OciLayout.open_dir(layout.root / "blobs")


def test_a_fifo_planted_as_blob_is_refused_without_hanging(layout):
    single(layout, LAYER)
    _, manifest = _manifest_of(layout)
    path = _blob_path(layout, manifest["config"]["digest"])
    path.unlink()
    os.mkfifo(path)
    with pytest.raises(ImageInvalid, match=r"is not a regular file"):
        resolve(OciLayout.open_dir(layout.root))


def test_open_blob_refuses_a_digest_that_is_a_path(layout):
    single(layout, LAYER)
    with pytest.raises(ImageInvalid, match=r"is not a sha256 or sha512 digest"):
        OciLayout.open_dir(layout.root).open_blob("sha256:../../oci-layout")


def test_platform_strings_are_validated():
    from imgforge.errors import UsageError
    from imgforge.image import Platform

    assert str(Platform.parse("Linux/ARM64/V8")) == "linux/arm64/v8"
    with pytest.raises(UsageError, match=r"expected os/architecture"):
        Platform.parse("amd64")
    assert ImageRefused  # the error family exists for callers to catch


class _CarelessSource:
    """A source that ignores ``max_bytes``: the resolver's own cap still holds."""

    def describe(self) -> str:
        return "careless source"

    def get_manifest(self, reference, accept, max_bytes):
        from imgforge.image import FetchedManifest

        return FetchedManifest(b"{" + b" " * (5 << 20) + b"}", None, None)

    def open_blob(self, digest):
        raise AssertionError("never reached")


def test_resolver_caps_a_source_that_ignores_max_bytes():
    with pytest.raises(LimitExceeded, match=r"careless source: manifest None: document size"):
        resolve(_CarelessSource())
