"""The SBOM of real images: the package database and os-release read out of the local Debian bases
(the same bytes the image reader will hand over), the example site's content files, spdx-tools."""

from __future__ import annotations

import io
import json
import tarfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from imgforge.signing import ospkg, sbom

pytestmark = pytest.mark.docker

LABEL = "io.imgforge.test.signing"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "example-site" / "www-data"
CREATED = datetime(2025, 6, 1, tzinfo=UTC)


def read_files(client, image: str, paths: list[str]) -> dict[str, bytes]:
    """Regular files out of ``image`` without running it (a created, never started container)."""
    container = client.api.create_container(image, command=["/"], labels={LABEL: uuid.uuid4().hex})
    try:
        out = {}
        for path in paths:
            stream, _ = client.api.get_archive(container["Id"], f"/{path}")
            with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
                member = tar.next()
                assert member is not None, f"{path} is not a regular file in {image}"
                assert member.isfile(), f"{path} is not a regular file in {image}"
                extracted = tar.extractfile(member)
                assert extracted is not None
                out[path] = extracted.read()
        return out
    finally:
        client.api.remove_container(container["Id"], force=True)


def image_sbom(client, image: str, digest: str) -> dict:
    found = read_files(client, image, [ospkg.DPKG_STATUS_PATH, "usr/lib/os-release"])
    namespace, distro = ospkg.distro_of(ospkg.os_release(found["usr/lib/os-release"].decode()))
    pkgs = ospkg.dpkg_packages(found[ospkg.DPKG_STATUS_PATH].decode(), namespace, distro)
    content = [
        sbom.ContentFile.from_bytes(f"usr/share/nginx/html/{p.relative_to(EXAMPLE).as_posix()}", p.read_bytes())
        for p in sorted(EXAMPLE.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    ]
    return sbom.spdx_document(
        name=f"127.0.0.1:5000/test/{image.split('/')[-1].split(':')[0]}",
        image_digest=digest,
        packages=pkgs,
        files=content,
        created=CREATED,
        tool_version="0.1.0",
    )


def test_sbom_of_the_debian_bases_is_valid_and_lists_their_packages(docker_client, debian_base, nginx_base, tmp_path):
    base = image_sbom(docker_client, debian_base, "sha256:" + "11" * 32)
    with_nginx = image_sbom(docker_client, nginx_base, "sha256:" + "22" * 32)
    for doc in (base, with_nginx):
        path = tmp_path / "doc.spdx.json"
        path.write_text(json.dumps(doc), encoding="utf-8")
        assert [m.validation_message for m in validate_full_spdx_document(parse_file(str(path)))] == []
    purls = [p["externalRefs"][0]["referenceLocator"] for p in base["packages"][2:]]
    assert any(p.startswith("pkg:deb/debian/libc6@") and "distro=debian-12" in p for p in purls), purls[:5]
    assert any(p.startswith("pkg:deb/debian/dpkg@") for p in purls)
    diff = sbom.sbom_diff(base, with_nginx)
    assert any("/nginx" in p for p in diff.packages_added), diff.packages_added
    assert diff.files_added == diff.files_removed == diff.files_changed == []
