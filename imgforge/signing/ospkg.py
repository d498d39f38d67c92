"""The OS packages installed in an image, read from the image's own package database text.

The SBOM lists what the package manager recorded, not what a scanner guesses: Debian's
``/var/lib/dpkg/status`` (deb822 paragraphs, parsed with python-debian, the parser Debian's own
tools use) and Alpine's ``/lib/apk/db/installed``. apk's database is blocks of one-letter
``K:value`` lines whose keys differ only in case (``P`` package, ``p`` provides), which a deb822
parser folds together, so it gets the few lines of parsing it needs here. Each package carries its
package URL (purl, built with packageurl-python so versions like ``1:2.3`` are encoded right).

Input is plain text the image reader extracted; nothing here opens an image or a file.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from debian.deb822 import Packages
from packageurl import PackageURL

from imgforge.errors import FormatError

DPKG_STATUS_PATH = "var/lib/dpkg/status"
APK_INSTALLED_PATH = "lib/apk/db/installed"
OS_RELEASE_PATHS = ("etc/os-release", "usr/lib/os-release")


@dataclass(frozen=True, order=True)
class OsPackage:
    kind: str  # purl type: "deb" or "apk"
    namespace: str  # the distribution's purl namespace: "debian", "ubuntu", "alpine"
    name: str
    version: str
    arch: str
    distro: str | None = None  # purl "distro" qualifier, e.g. "debian-12"
    source: str | None = None  # the source package (dpkg Source, apk origin)

    @property
    def purl(self) -> str:
        qualifiers = {"arch": self.arch}
        if self.distro:
            qualifiers["distro"] = self.distro
        return PackageURL(
            type=self.kind, namespace=self.namespace, name=self.name, version=self.version, qualifiers=qualifiers
        ).to_string()


def os_release(text: str) -> dict[str, str]:
    """``/etc/os-release`` as a dict (shell-style ``KEY=value`` lines, values possibly quoted)."""
    out = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        try:
            words = shlex.split(value)
        except ValueError:
            continue  # an unbalanced quote: skip the line, as os-release readers do
        out[key.strip()] = words[0] if words else ""
    return out


def distro_of(release: dict[str, str]) -> tuple[str, str | None]:
    """(purl namespace, ``distro`` qualifier) from os-release: ("debian", "debian-12")."""
    ident = release.get("ID", "").strip().lower()
    if not ident:
        raise FormatError("os-release: ID is missing")
    version = release.get("VERSION_ID", "").strip()
    return ident, f"{ident}-{version}" if version else None


def dpkg_packages(status_text: str, namespace: str = "debian", distro: str | None = None) -> list[OsPackage]:
    """Every package dpkg records as installed ("install ok installed"), sorted."""
    out = []
    for i, para in enumerate(Packages.iter_paragraphs(status_text.splitlines(keepends=True), use_apt_pkg=False)):
        status = para.get("Status", "").split()
        if len(status) != 3 or status[2] != "installed":
            continue  # removed-but-configured ("config-files"), half-installed, not-installed
        where = f"{DPKG_STATUS_PATH}: paragraph {i + 1}"
        name, version, arch = (para.get(k, "").strip() for k in ("Package", "Version", "Architecture"))
        for field_name, value in (("Package", name), ("Version", version), ("Architecture", arch)):
            if not value:
                raise FormatError(f"{where}: {field_name} is missing")
        source = para.get("Source", "").split(" ")[0].strip() or None
        out.append(OsPackage("deb", namespace, name, version, arch, distro, source))
    return sorted(out)


def apk_packages(installed_text: str, namespace: str = "alpine", distro: str | None = None) -> list[OsPackage]:
    """Every package in apk's installed database, sorted."""
    out = []
    for i, block in enumerate(installed_text.replace("\r\n", "\n").split("\n\n")):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if len(line) >= 2 and line[1] == ":" and line[0] not in fields:
                fields[line[0]] = line[2:]
        if not fields:
            continue
        where = f"{APK_INSTALLED_PATH}: block {i + 1}"
        for key, label in (("P", "P (name)"), ("V", "V (version)"), ("A", "A (arch)")):
            if not fields.get(key, "").strip():
                raise FormatError(f"{where}: {label} is missing")
        out.append(
            OsPackage(
                "apk",
                namespace,
                fields["P"].strip(),
                fields["V"].strip(),
                fields["A"].strip(),
                distro,
                fields.get("o", "").strip() or None,
            )
        )
    return sorted(out)
