"""Benchmark: ``imgforge fleet`` vs a plain sequential ``kubectl kustomize`` loop, same 100 overlays.

Generates a GitOps repo shaped like the owner's (base + production overlay with a strategic-merge
patch per app, a mix of hardened, partial, root and LinuxServer.io-style apps), then times
  A) ``imgforge fleet --repo R --format json`` (renders in parallel, parses, builds the report)
  B) ``for each overlay: kubectl kustomize <overlay> > /dev/null`` (renders only, one at a time)
Each side runs ROUNDS times, alternating, and the best time counts. Prints figures only.

    .venv/bin/python bench/bench_fleet.py [APPS] [ROUNDS]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OVERLAYS = "fluxcd/apps/overlays/production"

DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: {app}
spec:
  selector:
    matchLabels:
      app: {app}
  template:
    metadata:
      labels:
        app: {app}
    spec:
{pod}      containers:
        - name: {app}
          image: PLACEHOLDER_IMAGE
          ports:
            - containerPort: 80
              name: http
{container}"""

HARDENED_POD = """      securityContext:
        runAsNonRoot: true
        runAsUser: 10000
        runAsGroup: 10001
        fsGroup: 10001
        seccompProfile:
          type: RuntimeDefault
"""
HARDENED_CONTAINER = """          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities:
              drop: [ALL]
          resources:
            requests: {cpu: 10m, memory: 16Mi}
            limits: {memory: 64Mi}
"""
LSIO_CONTAINER = """          env:
            - name: PUID
              value: "1000"
            - name: PGID
              value: "1000"
"""
SERVICE = """apiVersion: v1
kind: Service
metadata:
  name: {app}
spec:
  selector:
    app: {app}
  ports:
    - port: 80
      targetPort: http
"""


def generate(root: Path, apps: int) -> list[Path]:
    overlays = []
    for i in range(apps):
        app, kind = f"app{i:03d}-site", i % 4
        pod = HARDENED_POD if kind == 0 else ""
        container = HARDENED_CONTAINER if kind == 0 else LSIO_CONTAINER if kind == 3 else ""
        patch_sc = "      securityContext:\n        runAsUser: 100\n        runAsGroup: 101\n" if kind == 1 else ""
        base, overlay = root / "fluxcd/apps/base" / app, root / OVERLAYS / app
        base.mkdir(parents=True)
        overlay.mkdir(parents=True)
        (base / "deployment.yaml").write_text(DEPLOYMENT.format(app=app, pod=pod, container=container))
        (base / "service.yaml").write_text(SERVICE.format(app=app))
        (base / "kustomization.yaml").write_text("resources:\n  - deployment.yaml\n  - service.yaml\n")
        (overlay / "kustomization.yaml").write_text(
            f"namespace: lost-woods\nresources:\n  - ../../../base/{app}\npatches:\n  - path: deployment-patch.yaml\n"
            f"    target:\n      kind: Deployment\n      name: {app}\n"
        )
        (overlay / "deployment-patch.yaml").write_text(
            f"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {app}\nspec:\n  template:\n    spec:\n"
            f"{patch_sc}      containers:\n        - name: {app}\n"
            f"          image: cr.example.com/prplanit/{app}:v0.0.{i}\n"
        )
        overlays.append(overlay)
    return overlays


def time_fleet(imgforge: str, repo: Path) -> float:
    started = time.perf_counter()
    proc = subprocess.run(
        [imgforge, "fleet", "--repo", str(repo), "--format", "json"], capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"imgforge fleet failed ({proc.returncode}): {proc.stderr.strip()}")
    return elapsed


def time_loop(kubectl: str, overlays: list[Path]) -> float:
    started = time.perf_counter()
    for overlay in overlays:
        subprocess.run([kubectl, "kustomize", str(overlay)], stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def main() -> None:
    apps = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    imgforge = shutil.which("imgforge", path=os.path.dirname(sys.executable)) or shutil.which("imgforge")
    kubectl = shutil.which("kubectl")
    if not imgforge or not kubectl:
        sys.exit("needs imgforge (the venv's) and kubectl on PATH")
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        overlays = generate(Path(tmp), apps)
        fleet_times, loop_times = [], []
        for _ in range(rounds):
            fleet_times.append(time_fleet(imgforge, Path(tmp)))
            loop_times.append(time_loop(kubectl, overlays))
    fleet_best, loop_best = min(fleet_times), min(loop_times)
    print(f"apps: {apps}  rounds: {rounds}  cpus: {os.cpu_count()}")
    print(f"imgforge fleet:            best {fleet_best:.2f}s  all {' '.join(f'{t:.2f}' for t in fleet_times)}")
    print(f"sequential kubectl loop:   best {loop_best:.2f}s  all {' '.join(f'{t:.2f}' for t in loop_times)}")
    print(f"ratio loop/fleet: {loop_best / fleet_best:.2f}x")


if __name__ == "__main__":
    main()
