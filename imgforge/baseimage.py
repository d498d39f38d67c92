"""Local base images for hosts that cannot pull: debootstrap a Debian minbase and import it.

Real users pull ``alpine`` or ``nginx`` images and never need this. Air-gapped hosts, CI runners
without registry access and this project's own tests make their base here instead, from a Debian
mirror (the default one or ``--mirror URL``). The images are hardened at the source: setuid and
setgid bits stripped, package lists and caches removed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors

from imgforge.engine import docker_client
from imgforge.errors import DockerError, ImgforgeError, UsageError

SUITE = "bookworm"
DEBIAN = f"imgforge/debian:{SUITE}"
NGINX_DEBIAN = f"imgforge/nginx-debian:{SUITE}"
LOCAL_BASES = {
    DEBIAN: "Debian minbase (profile debian installs nginx-light into it)",
    NGINX_DEBIAN: "Debian minbase with nginx-light (profile prebuilt)",
}


class BootstrapFailed(ImgforgeError):
    pass


@dataclass(frozen=True)
class BaseStatus:
    name: str
    purpose: str
    id: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "purpose": self.purpose, "present": self.id is not None, "id": self.id}


def status() -> list[BaseStatus]:
    client = docker_client()
    out = []
    for name, purpose in LOCAL_BASES.items():
        try:
            image_id = client.images.get(name).id
        except docker.errors.ImageNotFound:
            image_id = None
        out.append(BaseStatus(name, purpose, image_id))
    return out


def bootstrap_debian(
    *, with_nginx: bool = False, mirror: str | None = None, on_line: Callable[[str], None] | None = None
) -> list[str]:
    """Make ``imgforge/debian:bookworm`` (and with nginx ``imgforge/nginx-debian:bookworm``)."""
    say = on_line or (lambda _line: None)
    if os.geteuid() != 0:
        raise UsageError("imgforge base bootstrap needs root (debootstrap and chroot)")
    if shutil.which("debootstrap") is None:
        raise UsageError("debootstrap is not installed (apt-get install debootstrap)")
    client = docker_client()  # fail before the slow part when no engine answers
    made = []
    with tempfile.TemporaryDirectory(prefix="imgforge-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        say(f"debootstrap --variant=minbase {SUITE} ({mirror or 'default mirror'})")
        _run(["debootstrap", "--variant=minbase", SUITE, str(rootfs), *([mirror] if mirror else [])])
        lists = rootfs / "var/lib/apt/lists"
        kept = Path(tmp) / "apt-lists"
        if with_nginx:  # the minbase image ships without package lists; the nginx step needs them
            shutil.copytree(lists, kept, symlinks=True)
        _harden(rootfs)
        say(f"importing {DEBIAN}")
        _import(client, rootfs, DEBIAN, Path(tmp))
        made.append(DEBIAN)
        if with_nginx:
            shutil.rmtree(lists)
            shutil.copytree(kept, lists, symlinks=True)
            say("installing nginx-light in the chroot")
            _run(
                ["chroot", str(rootfs), "apt-get", "install", "-y", "-q", "--no-install-recommends", "nginx-light"],
                env={"DEBIAN_FRONTEND": "noninteractive"},
            )
            _harden(rootfs)
            say(f"importing {NGINX_DEBIAN}")
            _import(client, rootfs, NGINX_DEBIAN, Path(tmp))
            made.append(NGINX_DEBIAN)
    return made


def _harden(rootfs: Path) -> None:
    """No setuid/setgid files, no package lists, caches or logs left in the image."""
    for path in rootfs.rglob("*"):
        if path.is_symlink() or not path.is_file():
            continue
        mode = path.stat().st_mode
        if mode & 0o6000:
            path.chmod(mode & ~0o6000 & 0o7777)
    for cache in (rootfs / "var/cache/apt").glob("*.bin"):
        cache.unlink()  # pkgcache.bin, srcpkgcache.bin: apt rebuilds them (70 MB)
    for rel in ("var/lib/apt/lists", "var/cache/apt/archives", "var/log/nginx"):
        folder = rootfs / rel
        if folder.is_dir():
            for child in folder.iterdir():
                if child.is_dir() and child.name != "partial":
                    shutil.rmtree(child)
                elif child.is_file():
                    child.unlink()


def _import(client: docker.DockerClient, rootfs: Path, name: str, tmp: Path) -> None:
    archive = tmp / "rootfs.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(rootfs, arcname=".", recursive=True)
    repo, tag = name.rsplit(":", 1)
    try:
        client.api.import_image_from_file(str(archive), repository=repo, tag=tag, changes=['CMD ["/bin/bash"]'])
    except docker.errors.APIError as e:
        raise DockerError(f"cannot import {name}: {e.explanation or e}") from e
    finally:
        archive.unlink(missing_ok=True)


def _run(cmd: list[str], env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise BootstrapFailed(f"{cmd[0]} failed (exit {proc.returncode}): {' | '.join(tail) or 'no output'}")
