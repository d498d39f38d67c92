"""Benchmark: ``imgforge update --dry-run --json`` for eight sites, as a whole process.

The Renovate-style lookup alone (GitOps tag, registry releases, target, and here also the
target's verification: signature and the signed test report, with the public key), for eight
apps in the fixture GitOps layout of tests/gitops/gitops_repo_gen.py (two of each shape: overlay
patch, ``images:`` + Flux marker, image in the base, the duplicate-port trap) against Debian's
``docker-registry`` on a free 127.0.0.1 port. Each site's repository holds v0.0.1 (deployed) and
v0.0.2, a small image pushed through the API and signed and attested by imgforge.

Measured per run: wall time, and the peak resident memory of the process and its children
(``wait4``'s ``ru_maxrss``, what ``/usr/bin/time -v`` reports), median of RUNS. Compared with
Renovate 39's ``--platform=local`` lookup of the same eight apps measured on this machine (2 CPUs):
2.8 s wall, 262 MiB peak. The goal is at most a quarter of each. Prints figures only.

    .venv/bin/python bench/bench_update.py [RUNS]
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from imgforge import proof  # noqa: E402
from imgforge.registry import Credentials, RegistryClient  # noqa: E402
from imgforge.signing import keys  # noqa: E402
from tests.registry.conftest import _start_registry, _stop  # noqa: E402

RENOVATE_WALL, RENOVATE_MIB = 2.8, 262.0
SHAPES = ("patch", "images", "base", "trap")
APPS = [f"{name}-site" for name in ("ant", "bee", "cat", "dog", "eel", "fox", "gnu", "hen")]
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _generator():
    spec = importlib.util.spec_from_file_location("bench_update_repo_gen", REPO / "tests/gitops/gitops_repo_gen.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _blob(client: RegistryClient, name: str, data: bytes) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    client.upload_blob(name, digest, len(data), data)
    return {"digest": digest, "size": len(data)}


def push_image(client: RegistryClient, name: str, tag: str) -> str:
    """A one-file image (an index.html under the web root), pushed through the API."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = f"<h1>{name} {tag}</h1>\n".encode()
        info = tarfile.TarInfo("usr/share/nginx/html/index.html")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    layer = buf.getvalue()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": {"io.imgforge.site": name.rsplit("/", 1)[-1]}},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **_blob(client, name, config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **_blob(client, name, layer)}],
        }
    ).encode()
    return client.put_manifest(name, tag, manifest, OCI_MANIFEST)


def setup(tmp: Path, host: str, user: str, password: str) -> tuple[Path, Path, Path]:
    """(catalog, GitOps repo, cosign.pub): eight sites, each with v0.0.1 deployed and v0.0.2 signed."""
    gen = _generator()
    pair = keys.write_key_pair(tmp / "keys", "bench")
    os.environ.update({"IMGFORGE_SIGNING_KEY": str(pair.private_path), "IMGFORGE_SIGNING_PASSWORD": "bench"})
    key = proof.signing_key()
    assert key is not None
    catalog = tmp / "catalog"
    (catalog / "sites").mkdir(parents=True)
    (catalog / "imgforge.toml").write_text("[defaults]\n", encoding="utf-8")
    repo = tmp / "gitops"
    report = {"checks": [{"name": "bench", "ok": True, "detail": "made by bench_update.py"}]}
    with RegistryClient(host, credentials=Credentials(user, password, "bench")) as client:
        for i, app in enumerate(APPS):
            name = f"bench/{app.removesuffix('-site')}"
            image = f"{host}/{name}"
            for tag in ("v0.0.1", "v0.0.2"):
                digest = push_image(client, name, tag)
                proof.sign_and_attest(client, name, digest, key, test_report=report)
            gen.write_app(repo, app, SHAPES[i % len(SHAPES)], tag="v0.0.1")
            for path in repo.rglob("*.yaml"):
                text = path.read_text(encoding="utf-8")
                if gen.image_of(app) in text:
                    path.write_text(text.replace(gen.image_of(app), image), encoding="utf-8")
            (catalog / "sites" / f"{app.removesuffix('-site')}.toml").write_text(
                f'image = "{image}"\ntag = "v0.0.2"\n[gitops]\napp = "{app}"\n', encoding="utf-8"
            )
    gen.write_common(repo, APPS)
    gen.git_commit(repo)
    return catalog, repo, pair.public_path


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB of the process and its children, stdout)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        out.seek(0)
        text = out.read().decode()
    if proc.returncode != 0:
        raise SystemExit(f"imgforge update --dry-run failed ({proc.returncode}): {text[:500]}")
    return wall, usage.ru_maxrss / 1024, text


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    with tempfile.TemporaryDirectory(prefix="imgforge-bench-update-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "registry").mkdir()
        reg = _start_registry(tmp / "registry", {}, "", "")
        try:
            catalog, repo, public = setup(tmp, reg.host, "", "")
            env = {
                **os.environ,
                "IMGFORGE_SIGNING_KEY_PUB": str(public),
                "DOCKER_CONFIG": str(tmp / "no-docker-config"),
            }
            for name in ("IMGFORGE_SIGNING_KEY", "IMGFORGE_SIGNING_PASSWORD"):
                env.pop(name, None)
            argv = [sys.executable, "-m", "imgforge", "update", "--all", "--repo", str(repo)]
            argv += ["--dry-run", "--json", "--root", str(catalog)]
            run_once(argv, env)  # warm the page cache once
            samples = [run_once(argv, env) for _ in range(runs)]
        finally:
            _stop(reg.proc)
    rows = json.loads(samples[-1][2])
    statuses = sorted({r["status"] for r in rows})
    wall = statistics.median(s[0] for s in samples)
    mib = statistics.median(s[1] for s in samples)
    print(f"update --dry-run --json, {len(rows)} sites ({', '.join(statuses)}), median of {runs} runs")
    print(
        f"  wall {wall:.2f} s   (Renovate 39 lookup {RENOVATE_WALL} s: ratio {wall / RENOVATE_WALL:.2f}, goal <= 0.25)"
    )
    print(
        f"  peak {mib:.0f} MiB (Renovate 39 lookup {RENOVATE_MIB:.0f} MiB: "
        f"ratio {mib / RENOVATE_MIB:.2f}, goal <= 0.25)"
    )


if __name__ == "__main__":
    main()
