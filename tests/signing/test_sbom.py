"""The SPDX SBOM: OS packages from the package databases, content files, validation by spdx-tools
(the SPDX project's library), determinism, and the diff a merge request shows."""

from __future__ import annotations

import copy
import json
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from imgforge.errors import FormatError
from imgforge.signing import intoto, ospkg, sbom

DIGEST = "sha256:" + "ab" * 32
NEW_DIGEST = "sha256:" + "cd" * 32
NAME = "registry.example.invalid/sites/example"
CREATED = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)

# The shape dpkg writes (fields as in a bookworm /var/lib/dpkg/status), including entries that are
# not installed and must not be listed.
DPKG_STATUS = textwrap.dedent("""\
    Package: libc6
    Status: install ok installed
    Priority: optional
    Section: libs
    Installed-Size: 12986
    Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
    Architecture: amd64
    Multi-Arch: same
    Source: glibc
    Version: 2.36-9+deb12u7
    Depends: libgcc-s1
    Description: GNU C Library: Shared libraries
     Contains the standard libraries that are used by nearly all programs on
     the system.

    Package: tzdata
    Status: install ok installed
    Architecture: all
    Version: 2024a-0+deb12u1
    Description: time zone and daylight-saving time data

    Package: libstdc++6
    Status: install ok installed
    Architecture: amd64
    Source: gcc-12 (12.2.0-14)
    Version: 12.2.0-14
    Description: GNU Standard C++ Library v3

    Package: oldpkg
    Status: deinstall ok config-files
    Architecture: amd64
    Version: 1.0
    Description: removed, configuration left

    Package: halfway
    Status: install reinstreq half-installed
    Architecture: amd64
    Version: 2.0
    Description: broken install
    """)

# The shape apk writes to /lib/apk/db/installed: note ``p`` (provides) beside ``P`` (name).
APK_INSTALLED = textwrap.dedent("""\
    C:Q1u6rUe6DRWd6eLQNmJtfl4FbcXpA=
    P:musl
    V:1.2.5-r8
    A:x86_64
    S:409553
    I:667648
    T:the musl c library (libc) implementation
    U:https://musl.libc.org/
    L:MIT
    o:musl
    m:Natanael Copa <ncopa@alpinelinux.org>
    t:1734096060
    c:4ef2e7d4a6f4b9e2c1c5b3cbb6f0fd3d5e0b47a4
    p:so:libc.musl-x86_64.so.1=1
    F:lib
    R:ld-musl-x86_64.so.1
    a:0:0:755
    Z:Q1kU3fD5g8Q7f7i3c1pEyS1oO2f6m4E=

    C:Q1Yk9b4y3eA8ftI7qkCUqE3k2YfP0xM=
    P:nginx
    V:1.26.2-r4
    A:x86_64
    o:nginx
    p:cmd:nginx=1.26.2-r4
    F:usr/sbin
    R:nginx
    """)


def packages() -> list[ospkg.OsPackage]:
    return ospkg.dpkg_packages(DPKG_STATUS, "debian", "debian-12")


def files() -> list[sbom.ContentFile]:
    return [
        sbom.ContentFile.from_bytes("usr/share/nginx/html/index.html", b"<h1>hi</h1>\n"),
        sbom.ContentFile.from_bytes("usr/share/nginx/html/css/site style.css", b"body{}\n"),
    ]


def document(pkgs=None, content=None, digest=DIGEST) -> dict:
    return sbom.spdx_document(
        name=NAME,
        image_digest=digest,
        packages=packages() if pkgs is None else pkgs,
        files=files() if content is None else content,
        created=CREATED,
        tool_version="0.1.0",
        repository=NAME,
    )


def spdx_errors(doc: dict, tmp_path: Path) -> list[str]:
    path = tmp_path / "sbom.spdx.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return [m.validation_message for m in validate_full_spdx_document(parse_file(str(path)))]


# --- package databases ---------------------------------------------------------------------------


def test_dpkg_status_lists_installed_packages_with_purls():
    got = {p.name: p for p in packages()}
    assert sorted(got) == ["libc6", "libstdc++6", "tzdata"]  # config-files and half-installed left out
    assert got["libc6"].purl == "pkg:deb/debian/libc6@2.36-9%2Bdeb12u7?arch=amd64&distro=debian-12"
    assert got["libstdc++6"].purl == "pkg:deb/debian/libstdc%2B%2B6@12.2.0-14?arch=amd64&distro=debian-12"
    assert got["libstdc++6"].source == "gcc-12"
    assert got["tzdata"].arch == "all"


def test_dpkg_epoch_is_kept_in_version_and_purl():
    (pkg,) = ospkg.dpkg_packages("Package: x\nStatus: install ok installed\nArchitecture: all\nVersion: 1:2.3-4\n")
    assert pkg.version == "1:2.3-4"
    assert pkg.purl == "pkg:deb/debian/x@1:2.3-4?arch=all"


def test_dpkg_paragraph_without_version_is_an_error_naming_it():
    with pytest.raises(FormatError, match="var/lib/dpkg/status: paragraph 2: Version is missing"):
        ospkg.dpkg_packages(DPKG_STATUS.replace("Version: 2024a-0+deb12u1\n", ""))


def test_apk_installed_lists_packages_with_purls():
    got = ospkg.apk_packages(APK_INSTALLED, "alpine", "alpine-3.21.2")
    assert [(p.name, p.version, p.arch, p.source) for p in got] == [
        ("musl", "1.2.5-r8", "x86_64", "musl"),
        ("nginx", "1.26.2-r4", "x86_64", "nginx"),
    ]
    assert got[1].purl == "pkg:apk/alpine/nginx@1.26.2-r4?arch=x86_64&distro=alpine-3.21.2"


def test_apk_block_without_arch_is_an_error():
    with pytest.raises(FormatError, match="lib/apk/db/installed: block 2: A \\(arch\\) is missing"):
        ospkg.apk_packages(APK_INSTALLED.replace("A:x86_64\no:nginx", "o:nginx"))


def test_os_release_gives_namespace_and_distro():
    release = ospkg.os_release(
        'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n'
        'VERSION_ID="12"\nID=debian\n# comment\nBROKEN="unbalanced\n'
    )
    assert ospkg.distro_of(release) == ("debian", "debian-12")
    assert ospkg.distro_of(ospkg.os_release("ID=alpine\nVERSION_ID=3.21.2\n")) == ("alpine", "alpine-3.21.2")
    with pytest.raises(FormatError):
        ospkg.distro_of({})


# --- the SPDX document ---------------------------------------------------------------------------


def test_document_is_valid_spdx_2_3(tmp_path):
    assert spdx_errors(document(), tmp_path) == []


def test_spdx_tools_catches_a_broken_document(tmp_path):
    broken = document()
    broken["files"][0]["checksums"] = [c for c in broken["files"][0]["checksums"] if c["algorithm"] != "SHA1"]
    broken["packages"][1]["packageVerificationCode"]["packageVerificationCodeValue"] = "nothex"
    errors = spdx_errors(broken, tmp_path)
    assert any("SHA1" in e for e in errors), errors


def test_document_describes_the_image_with_every_package_and_file():
    doc = document()
    assert doc["spdxVersion"] == "SPDX-2.3"
    assert doc["dataLicense"] == "CC0-1.0"
    assert doc["documentNamespace"] == (
        f"https://imgforge.io/spdx/registry.example.invalid%2Fsites%2Fexample/sha256-{'ab' * 32}"
    )
    assert doc["creationInfo"] == {"created": "2025-01-02T03:04:05Z", "creators": ["Tool: imgforge-0.1.0"]}
    image = doc["packages"][0]
    assert image["primaryPackagePurpose"] == "CONTAINER"
    assert image["checksums"][0]["checksumValue"] == "ab" * 32
    assert image["externalRefs"][0]["referenceLocator"] == (
        f"pkg:oci/example@sha256:{'ab' * 32}?repository_url=registry.example.invalid/sites/example"
    )
    purls = [p["externalRefs"][0]["referenceLocator"] for p in doc["packages"][2:]]
    assert purls == sorted(p.purl for p in packages())
    names = {f["fileName"]: f for f in doc["files"]}
    assert sorted(names) == ["./usr/share/nginx/html/css/site style.css", "./usr/share/nginx/html/index.html"]
    import hashlib

    assert {c["algorithm"]: c["checksumValue"] for c in names["./usr/share/nginx/html/index.html"]["checksums"]} == {
        "SHA1": hashlib.sha1(b"<h1>hi</h1>\n").hexdigest(),
        "SHA256": hashlib.sha256(b"<h1>hi</h1>\n").hexdigest(),
    }
    contains = {
        (r["spdxElementId"], r["relatedSpdxElement"])
        for r in doc["relationships"]
        if r["relationshipType"] == "CONTAINS"
    }
    assert len(contains) == 1 + len(packages()) + len(files())


def test_document_is_deterministic_whatever_the_input_order():
    first = document()
    second = document(pkgs=list(reversed(packages())), content=list(reversed(files())))
    assert json.dumps(first) == json.dumps(second)


def test_element_ids_are_unique_even_when_names_sanitize_alike(tmp_path):
    pkgs = [
        ospkg.OsPackage("deb", "debian", "libfoo+", "1", "amd64"),
        ospkg.OsPackage("deb", "debian", "libfoo-", "1", "amd64"),
    ]
    doc = document(pkgs=pkgs)
    ids = [p["SPDXID"] for p in doc["packages"]]
    assert len(ids) == len(set(ids))
    assert spdx_errors(doc, tmp_path) == []


@pytest.mark.parametrize("path", ["", "/", "a/../etc/passwd", "a//b", "./", "a\0b"])
def test_bad_content_paths_are_refused(path):
    with pytest.raises(FormatError, match="expected a relative path"):
        document(content=[sbom.ContentFile.from_bytes(path, b"x")])


def test_duplicate_content_path_is_refused():
    with pytest.raises(FormatError, match="listed twice"):
        document(content=[sbom.ContentFile.from_bytes("a", b"1"), sbom.ContentFile.from_bytes("/a", b"2")])


def test_bad_hash_is_refused():
    with pytest.raises(FormatError, match="lowercase hex"):
        document(content=[sbom.ContentFile("a", "AB" * 32, "ab" * 20)])


def test_sbom_travels_as_an_spdx_statement(keypair, ref):
    stmt = intoto.statement([intoto.subject(NAME, DIGEST)], intoto.SPDX_PREDICATE_TYPE, document())
    payload = ref.verify_dsse(intoto.attestation_envelope(stmt, keypair.private), keypair.public_pem)
    assert ref.validate_statement(payload)["predicate"]["spdxVersion"] == "SPDX-2.3"


# --- the diff for a merge request ----------------------------------------------------------------


def test_diff_reports_packages_and_files():
    old = document()
    new_pkgs = [p for p in packages() if p.name != "tzdata"]
    new_pkgs = [
        ospkg.OsPackage(
            p.kind,
            p.namespace,
            p.name,
            "2.36-9+deb12u9" if p.name == "libc6" else p.version,
            p.arch,
            p.distro,
            p.source,
        )
        for p in new_pkgs
    ]
    new_pkgs.append(ospkg.OsPackage("deb", "debian", "nginx-light", "1.22.1-9", "amd64", "debian-12"))
    new_files = [
        sbom.ContentFile.from_bytes("usr/share/nginx/html/index.html", b"<h1>hello</h1>\n"),
        sbom.ContentFile.from_bytes("usr/share/nginx/html/about.html", b"about\n"),
    ]
    diff = sbom.sbom_diff(old, document(pkgs=new_pkgs, content=new_files, digest=NEW_DIGEST))
    assert diff.packages_added == ["pkg:deb/debian/nginx-light@1.22.1-9?arch=amd64&distro=debian-12"]
    assert diff.packages_removed == ["pkg:deb/debian/tzdata@2024a-0%2Bdeb12u1?arch=all&distro=debian-12"]
    assert [(c.name, c.old, c.new, c.direction) for c in diff.packages_changed] == [
        ("libc6", "2.36-9+deb12u7", "2.36-9+deb12u9", "upgrade")
    ]
    assert diff.files_added == ["usr/share/nginx/html/about.html"]
    assert diff.files_removed == ["usr/share/nginx/html/css/site style.css"]
    assert diff.files_changed == ["usr/share/nginx/html/index.html"]
    assert not diff.empty
    assert json.dumps(diff.to_dict())


def test_diff_of_a_document_with_itself_is_empty():
    assert sbom.sbom_diff(document(), copy.deepcopy(document())).empty


def test_diff_orders_debian_versions_the_dpkg_way_and_leaves_apk_unordered():
    def one(kind, ns, version):
        return document(pkgs=[ospkg.OsPackage(kind, ns, "p", version, "amd64")])

    (change,) = sbom.sbom_diff(one("deb", "debian", "1:1.0"), one("deb", "debian", "2.0")).packages_changed
    assert change.direction == "downgrade"  # the epoch outranks everything after it
    (change,) = sbom.sbom_diff(one("deb", "debian", "1.0~rc1"), one("deb", "debian", "1.0")).packages_changed
    assert change.direction == "upgrade"
    (change,) = sbom.sbom_diff(one("apk", "alpine", "1.26.2-r4"), one("apk", "alpine", "1.26.3-r0")).packages_changed
    assert change.direction == "changed"


def test_diff_refuses_a_document_that_is_not_spdx_json():
    with pytest.raises(FormatError):
        sbom.sbom_diff({"packages": "nope"}, document())
