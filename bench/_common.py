"""Shared by the benchmarks: a throwaway catalog of sites on the local base, and timing helpers."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tomlkit

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "example-site"
NGINX_BASE = "imgforge/nginx-debian:bookworm"


def photo_site(folder: Path, photos: int, size: int, seed: int) -> Path:
    """The example site plus ``photos`` incompressible "photos": real sites here are photo-heavy."""
    import random
    import shutil

    www = folder / "www-data"
    shutil.copytree(EXAMPLE / "www-data", www, dirs_exist_ok=True)
    rng = random.Random(seed)
    (www / "photos").mkdir(exist_ok=True)
    for i in range(photos):
        (www / "photos" / f"img{i:03d}.jpg").write_bytes(rng.randbytes(size))
    return folder


def make_catalog(sites: dict[str, dict], root: Path | None = None) -> Path:
    root = root or Path(tempfile.mkdtemp(prefix="imgforge-bench-"))
    (root / "sites").mkdir(parents=True, exist_ok=True)
    (root / "imgforge.toml").write_text("[defaults]\n")
    for name, fields in sites.items():
        data = {
            "image": f"127.0.0.1:5000/bench/{name}",
            "tag": "v0.0.1",
            "profile": "prebuilt",
            "base_image": NGINX_BASE,
            "source": {"path": str(EXAMPLE)},
            **fields,
        }
        (root / "sites" / f"{name}.toml").write_text(tomlkit.dumps(data))
    return root


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def imgforge(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "imgforge", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"imgforge {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


def row(name: str, value: str, target: str = "") -> None:
    print(f"{name:<58} {value:>14}  {target}")
