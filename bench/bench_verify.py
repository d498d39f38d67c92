"""Benchmarks of `imgforge test`, printing figures from one run (no assertions on time).

1. `imgforge test example`: median wall time of 5 runs (target <= 2.0 s), beside the floor measured
   in the same run: a bare `docker run` of the same image until its first HTTP 200.
2. Several sites with content: tested in one call (verify.run_sites) vs one after another.
   The repository's catalog has one site with local content, so a temporary catalog of four
   sites with different settings is built from the example content.
3. Served throughput (wrk, loopback, bounded in time) of the hardened image run as Kubernetes
   "restricted" would, vs the same nginx and content as root on port 80 with Debian's stock config.

Run from the repository root: `.venv/bin/python bench/bench_verify.py [--runs 5] [--wrk-seconds 5]`.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

from imgforge import build, config, verify  # noqa: E402
from imgforge.engine import docker_client  # noqa: E402
from imgforge.render import CONTENT_ROOT  # noqa: E402

IMGFORGE = [str(REPO / ".venv" / "bin" / "imgforge")]
STOCK_BASE = "imgforge/nginx-debian:bookworm"  # the nginx the example site's image is built on


def _wait_200(url: str, timeout: float = 15.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return time.monotonic()
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.005)
    raise RuntimeError(f"{url} never answered 200")


OWNER_LABEL = f"io.imgforge.owner={os.environ.get('IMGFORGE_OWNER') or 'imgforge-bench'}"


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout.strip()


def bare_run_floor(image: str, port: int, user: str) -> float:
    """`docker run` (restricted, like the test's containers) until the first 200 on loopback."""
    started = time.monotonic()
    cid = _docker(
        "run",
        "-d",
        "--label",
        OWNER_LABEL,
        "--user",
        user,
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "-p",
        f"127.0.0.1::{port}",
        image,
    )
    try:
        host_port = _docker("port", cid, str(port)).splitlines()[0].rsplit(":", 1)[1]
        return _wait_200(f"http://127.0.0.1:{host_port}/") - started
    finally:
        _docker("rm", "-f", cid)


def bench_single(runs: int) -> None:
    catalog = config.load_catalog(REPO)
    site = catalog.site("example")
    result = build.build_site(catalog, site)
    times, floors = [], []
    for _ in range(runs):
        started = time.monotonic()
        proc = subprocess.run(
            [*IMGFORGE, "test", "example", "--root", str(REPO), "--json"], capture_output=True, text=True
        )
        times.append(time.monotonic() - started)
        if proc.returncode != 0:
            print(f"   imgforge test exited {proc.returncode}: {proc.stderr.strip()[-300:]}")
        floors.append(bare_run_floor(result.id, site.port, f"{site.uid}:{site.gid}"))
    print("1) imgforge test example (CLI wall time, 16 checks, 4 containers and 1 created)")
    print(f"   runs:   {' '.join(f'{t:.2f}' for t in times)} s")
    print(f"   median: {statistics.median(times):.2f} s   (target <= 2.00 s)")
    print(
        f"   floor:  {statistics.median(floors):.2f} s median of bare `docker run` to first HTTP 200 "
        f"({' '.join(f'{t:.2f}' for t in floors)})"
    )


SITES = {
    "spa-default": {"fallback": "spa"},
    "notfound-uid": {"fallback": "404", "uid": 10000, "gid": 10001, "port": 9000},
    "plain": {
        "fallback": "404",
        "gzip": False,
        "cache_assets": False,
        "port": 8088,
        "headers": {"Permissions-Policy": "camera=()"},
    },
    "openshift": {"fallback": "spa", "uid": 1001, "gid": 1001, "ipv6": "off"},
}


def bench_many(work: Path) -> None:
    import tomlkit

    root = work / "catalog"
    (root / "sites").mkdir(parents=True)
    (root / "imgforge.toml").write_text("[defaults]\n")
    for name, fields in SITES.items():
        data = {
            "image": f"127.0.0.1:5000/imgforge-bench/{name}",
            "tag": "v0.0.1",
            "profile": "prebuilt",
            "base_image": STOCK_BASE,
            "source": {"path": str(REPO / "examples" / "example-site")},
            **fields,
        }
        (root / "sites" / f"{name}.toml").write_text(tomlkit.dumps(data))
    catalog = config.load_catalog(root)
    sites = list(catalog.sites.values())
    try:
        for site in sites:
            build.build_site(catalog, site, out_dir=work / "ctx" / site.name)
        started = time.monotonic()
        together = verify.run_sites(catalog, sites)
        t_together = time.monotonic() - started
        started = time.monotonic()
        apart = [verify.run_site(catalog, site) for site in sites]
        t_apart = time.monotonic() - started
    finally:
        for site in sites:
            subprocess.run(["docker", "rmi", "-f", site.reference], capture_output=True)
    ok = all(r.ok for r in together + apart)
    print(
        f"2) {len(sites)} sites (different fallback, uid:gid, port, gzip, headers), all checks "
        f"{'passed' if ok else 'NOT passed'}"
    )
    print(f"   one call: {t_together:.2f} s   one after another: {t_apart:.2f} s   ratio {t_apart / t_together:.2f}x")


def _stock_image(work: Path) -> str:
    """The same nginx and content as root with Debian's stock config (default site, port 80)."""
    ctx = work / "stock"
    shutil.copytree(REPO / "examples" / "example-site" / "www-data", ctx / "html")
    (ctx / "Dockerfile").write_text(
        textwrap.dedent(f"""\
        FROM {STOCK_BASE}
        COPY html/ /var/www/html/
        EXPOSE 80
        CMD ["nginx", "-g", "daemon off;"]
        """)
    )
    tag = "imgforge-bench/stock-root:1"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(ctx, arcname=".")
    buf.seek(0)
    docker_client().images.build(fileobj=buf, custom_context=True, tag=tag, rm=True)
    return tag


def _wrk(port: int, seconds: int) -> float:
    out = subprocess.run(
        ["wrk", "-t2", "-c32", f"-d{seconds}s", f"http://127.0.0.1:{port}/index.html"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def bench_throughput(work: Path, seconds: int) -> None:
    catalog = config.load_catalog(REPO)
    site = catalog.site("example")
    hardened = build.build_site(catalog, site).id
    stock = _stock_image(work)
    restricted = [
        "--user",
        f"{site.uid}:{site.gid}",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "-p",
        f"127.0.0.1::{site.port}",
    ]
    runs = {
        "hardened": [*restricted, hardened],
        "root-stock": ["-p", "127.0.0.1::80", stock],
    }
    rates: dict[str, list[float]] = {name: [] for name in runs}
    try:
        for _round in range(2):  # interleaved, so load from other users hits both alike
            for name, args in runs.items():
                cid = _docker("run", "-d", "--label", OWNER_LABEL, *args)
                try:
                    inner = "80" if name == "root-stock" else str(site.port)
                    port = int(_docker("port", cid, inner).splitlines()[0].rsplit(":", 1)[1])
                    _wait_200(f"http://127.0.0.1:{port}/index.html")
                    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html").read()
                    assert body == (REPO / "examples/example-site/www-data/index.html").read_bytes()
                    rates[name].append(_wrk(port, seconds))
                finally:
                    _docker("rm", "-f", cid)
    finally:
        subprocess.run(["docker", "rmi", "-f", stock], capture_output=True)
    best = {name: max(values) for name, values in rates.items()}
    print(f"3) throughput, wrk -t2 -c32 -d{seconds}s GET /index.html over loopback, best of 2 interleaved rounds")
    for name, values in rates.items():
        print(f"   {name:18s} {best[name]:9.0f} req/s   (rounds: {', '.join(f'{v:.0f}' for v in values)})")
    print(f"   ratio hardened/root-stock: {best['hardened'] / best['root-stock']:.3f}   (target >= 0.95)")
    print(
        f"   ({CONTENT_ROOT} vs /var/www/html, same bytes; the stock config logs to a file, the hardened "
        "image to stdout, buffered 64k / flushed every second)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--wrk-seconds", type=int, default=5)
    parser.add_argument("--only", choices=["1", "2", "3"], action="append")
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} at start")
    with tempfile.TemporaryDirectory(prefix="imgforge-bench-") as tmp:
        os.environ["IMGFORGE_STATE_DIR"] = str(Path(tmp) / "state")  # never touch the user's records
        if not args.only or "1" in args.only:
            bench_single(args.runs)
        if not args.only or "2" in args.only:
            bench_many(Path(tmp))
        if not args.only or "3" in args.only:
            bench_throughput(Path(tmp), args.wrk_seconds)


if __name__ == "__main__":
    main()
