"""The oci builder's part of bench_build.py (issue 13): figures from one run, asserts nothing.

Called by ``bench_build.py`` (``--oci`` for this part alone) with the catalog and rendered contexts
it made: warm ``build --all --builder oci`` vs plain ``docker build``; a cold oci build of a 20 MiB
site vs a cold plain ``docker build``; the bytes a one-file change uploads; the rebase of every
site onto a moved base.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import NGINX_BASE, imgforge, median, row, timed

REGISTRY = shutil.which("docker-registry") or "/usr/bin/docker-registry"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _registry(tmp: Path) -> tuple[subprocess.Popen, str]:
    """A throwaway docker-registry on a free loopback port (never Debian's service on :5000)."""
    port = _free_port()
    config = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(tmp / "data")}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(8)},
    }
    (tmp / "config.yml").write_text(json.dumps(config))
    proc = subprocess.Popen([REGISTRY, "serve", str(tmp / "config.yml")], stderr=subprocess.DEVNULL)
    import requests

    for _ in range(300):
        try:
            requests.get(f"http://127.0.0.1:{port}/v2/", timeout=1)
        except requests.ConnectionError:
            time.sleep(0.05)
        else:
            return proc, f"127.0.0.1:{port}"
    proc.kill()
    raise SystemExit("docker-registry did not start")


def run(root: Path, contexts: Path, sites: int, warm_plain: float | None, made: set[str], client) -> None:
    cache = Path(tempfile.mkdtemp(prefix="imgforge-bench-oci-"))
    os.environ["IMGFORGE_CACHE_DIR"] = str(cache)  # the imgforge processes below inherit it
    os.environ["SOURCE_DATE_EPOCH"] = "1700000000"
    try:
        _run(root, contexts, sites, warm_plain, made, client, cache)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def _all_in_process(root: Path) -> None:
    """What ``build --all --builder oci`` does once Python and imgforge are loaded."""
    from imgforge import config
    from imgforge.hashcache import HashCache
    from imgforge.oci import BaseLookup, build_site_oci

    catalog = config.load_catalog(root)
    cache, bases = HashCache.default(), BaseLookup()
    for site in catalog.sites.values():
        build_site_oci(catalog, site, cache=cache, lookup=bases)


def _plain_all(contexts: Path, sites: int) -> None:
    for i in range(sites):
        subprocess.run(
            ["docker", "build", "-q", "-t", f"bench-plain/site{i}:warm", str(contexts / f"site{i}")],
            check=True,
            capture_output=True,
        )


def _run(root, contexts, sites, warm_plain, made, client, cache: Path) -> None:
    imgforge("build", "--all", "--builder", "oci", "--root", str(root))  # fills the layouts
    warm_oci = median(
        [timed(lambda: imgforge("build", "--all", "--builder", "oci", "--root", str(root))) for _ in range(3)]
    )
    if warm_plain is None:
        _plain_all(contexts, sites)
        warm_plain = median([timed(lambda: _plain_all(contexts, sites)) for _ in range(3)])
    row(f"warm build --all ({sites} sites), oci builder", f"{warm_oci:.3f} s")
    row(f"warm build --all ({sites} sites), plain docker build", f"{warm_plain:.3f} s")
    row("warm speed-up (plain / oci)", f"{warm_plain / warm_oci:.1f}x", "target >= 20x")
    in_process = median([timed(lambda: _all_in_process(root)) for _ in range(3)])
    row(f"warm build of {sites} sites in-process (no interpreter start, imports)", f"{in_process:.3f} s")
    row("warm speed-up in-process (plain / oci)", f"{warm_plain / in_process:.1f}x")

    def cold_oci(keep_base: bool) -> None:
        """No layer of the site, no layout; ``keep_base``: the base's pin and hardening layer stay
        (per base, made once for every site on it, as the engine keeps the base for docker)."""
        for name in ("layers.json", "sites", *(() if keep_base else ("harden.json",))):
            path = cache / "oci" / name
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        imgforge("build", "site0", "--builder", "oci", "--force", "--root", str(root))

    def cold_plain() -> None:
        subprocess.run(
            ["docker", "build", "-q", "--no-cache", "-t", "bench-plain/site0:cold", str(contexts / "site0")],
            check=True,
            capture_output=True,
        )

    co, cf, cp = [], [], []
    for _ in range(3):
        cf.append(timed(lambda: cold_oci(False)))
        co.append(timed(lambda: cold_oci(True)))
        cp.append(timed(cold_plain))
    for img in client.images.list(name="bench-plain/*"):
        made.add(img.id)
    row("cold build of site0, oci builder (base pinned and hardened)", f"{median(co):.3f} s")
    row("cold build of site0, oci builder (hardening layer too)", f"{median(cf):.3f} s")
    row("cold build of site0, plain docker build --no-cache", f"{median(cp):.3f} s")
    row("cold ratio (oci / plain), base hardened", f"{median(co) / median(cp):.3f}", "target <= 0.5")
    row("cold ratio (oci / plain), hardening layer too", f"{median(cf) / median(cp):.3f}")
    imgforge("build", "--all", "--builder", "oci", "--root", str(root))  # every site's layers cached again

    _one_file_change(root, cache)
    _rebase(root, sites, made, client)


def _one_file_change(root: Path, cache: Path) -> None:
    from imgforge import config
    from imgforge.oci import build_site_oci, push

    tmp = Path(tempfile.mkdtemp(prefix="imgforge-bench-registry-"))
    proc, host = _registry(tmp)
    try:
        catalog = config.load_catalog(root)
        site = catalog.site("site0").model_copy(update={"image": f"{host}/bench/site0"})
        build_site_oci(catalog, site)
        first = push(site, [site.tag])
        photo = next((catalog.root / "content" / "site0" / "www-data" / "photos").iterdir())
        photo.write_bytes(os.urandom(photo.stat().st_size))
        build_site_oci(catalog, site)
        second = push(site, ["v0.0.2"])
        row(
            "first push of site0: bytes uploaded",
            f"{first.bytes_uploaded / 2**20:.1f} MiB",
            f"{len(first.uploaded)} blobs",
        )
        row(
            "push after a one-file change: bytes uploaded",
            f"{second.bytes_uploaded / 2**20:.2f} MiB",
            f"{len(second.uploaded)} blobs sent (content layer, config), {len(second.present)} present",
        )
    finally:
        proc.terminate()
        proc.wait(5)
        shutil.rmtree(tmp, ignore_errors=True)


def _rebase(root: Path, sites: int, made: set[str], client) -> None:
    """Every site onto a moved base: a local base one layer newer, pinned once before the timing."""
    moved = "bench-base/nginx-debian:moved"
    with tempfile.TemporaryDirectory() as ctx:
        Path(ctx, "Dockerfile").write_text(f"FROM {NGINX_BASE}\nRUN echo moved > /etc/base-release\n")
        subprocess.run(["docker", "build", "-q", "-t", moved, ctx], check=True, capture_output=True)
    made.add(client.images.get(moved).id)
    subprocess.run(
        [sys.executable, "-c", f"from imgforge.oci.base import resolve_base; resolve_base({moved!r})"], check=True
    )
    try:
        for path in (root / "sites").glob("*.toml"):
            path.write_text(path.read_text().replace(NGINX_BASE, moved))
        took = timed(lambda: imgforge("build", "--all", "--builder", "oci", "--root", str(root)))
        row(f"rebase of {sites} sites onto a moved base (one process)", f"{took:.3f} s", "target <= 2 s")
        for path in (root / "sites").glob("*.toml"):
            path.write_text(path.read_text().replace(moved, NGINX_BASE))
    finally:
        client.images.remove(moved, force=True)  # the tag this run made, by its exact name
