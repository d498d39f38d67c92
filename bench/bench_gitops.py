"""Benchmark: ``gitops plan`` for one site and for 100, beside a plain ``kubectl kustomize``.

Generates a GitOps repo of ~3,000 YAML files (100 site apps in the fixture shapes of
tests/gitops/gitops_repo_gen.py: overlay patch, ``images:`` + Flux marker, image in the base, the
duplicate-port trap; plus filler apps), and a catalog with one site per app. Then times, best of
ROUNDS:
  A1) ``gitops.plan`` for one site          B1) ``kubectl kustomize`` of that overlay
  A2) ``gitops.plan_many`` for all 100 sites B2) ``kubectl kustomize`` of the 100 overlays
  A3) ``gitops.plan`` per site, in a thread pool (for comparison with A2)
B2 runs the overlays in a thread pool. Each plan renders twice (before, and after on a patched
copy), so per site a ratio near 2 means imgforge's own work is small; plan_many renders all
overlays together (twice in all), which removes 198 kubectl start-ups. Targets: A1 <= 2 s,
A2 <= 20 s. Prints figures only.

    .venv/bin/python bench/bench_gitops.py [ROUNDS] [WORKERS]
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SITES = 100
TARGET_FILES = 3000
SHAPES = ("patch", "images", "base", "trap")


def _generator():
    spec = importlib.util.spec_from_file_location("bench_gitops_repo_gen", REPO / "tests/gitops/gitops_repo_gen.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(root: Path):
    gen = _generator()
    apps = {f"s{i:03d}-site": SHAPES[i % len(SHAPES)] for i in range(SITES)}
    repo = gen.make_repo(root, apps, git=False)
    have = sum(1 for _ in repo.rglob("*.yaml"))
    gen.write_filler(repo, max(0, TARGET_FILES - have), apps=40)
    (root / "catalog" / "sites").mkdir(parents=True)
    (root / "catalog" / "imgforge.toml").write_text("[defaults]\n")
    for app in apps:
        name = app.removesuffix("-site")
        (root / "catalog" / "sites" / f"{name}.toml").write_text(
            f'image = "{gen.image_of(app)}"\ntag = "v0.0.3"\n[gitops]\napp = "{app}"\n'
        )
    return repo, root / "catalog", gen


def best(rounds: int, fn) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else max(2, os.cpu_count() or 2)
    from imgforge import gitops
    from imgforge.config import load_catalog

    root = Path(tempfile.mkdtemp(prefix="imgforge-bench-gitops-"))
    try:
        repo, catalog_root, gen = build(root)
        catalog = load_catalog(catalog_root)
        names = sorted(catalog.sites)
        overlays = [repo / gen.OVERLAY_ROOT / catalog.site(n).app for n in names]
        yaml_files = sum(1 for _ in repo.rglob("*.y*ml"))
        kubectl = shutil.which("kubectl")

        def kustomize(overlay: Path) -> None:
            subprocess.run([kubectl, "kustomize", str(overlay)], check=True, stdout=subprocess.DEVNULL)

        def plan_all() -> list:
            return gitops.plan_many(catalog, names, repo)

        def plan_each() -> list:
            with ThreadPoolExecutor(workers) as pool:
                return list(pool.map(lambda n: gitops.plan(catalog, n, repo), names))

        def kustomize_all() -> None:
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(kustomize, overlays))

        plans = plan_all()  # warm-up, and a sanity check: batched and per-site plans agree
        changed = sum(not p.noop for p in plans)
        if [p.diff for p in plans] != [p.diff for p in plan_each()]:
            raise SystemExit("plan_many and plan disagree")
        a1 = best(rounds, lambda: gitops.plan(catalog, names[0], repo))
        b1 = best(rounds, lambda: kustomize(overlays[0]))
        a2 = best(rounds, plan_all)
        b2 = best(rounds, kustomize_all)
        a3 = best(rounds, plan_each)
        print(
            f"repo: {yaml_files} YAML files, {len(names)} site apps; {changed} plans with changes; "
            f"{workers} workers, best of {rounds}, {os.cpu_count()} CPUs"
        )
        print(
            f"gitops plan, 1 site:     {a1:7.3f} s (target <= 2 s)   kubectl kustomize 1 overlay:    "
            f"{b1:7.3f} s   ratio {a1 / b1:5.2f}"
        )
        print(
            f"gitops plan, {len(names)} sites:  {a2:7.3f} s (target <= 20 s)  kubectl kustomize {len(names)} "
            f"overlays: {b2:7.3f} s   ratio {a2 / b2:5.2f}   (plan_many, 2 batched renders)"
        )
        print(
            f"gitops plan, {len(names)} sites one by one ({workers} threads): {a3:7.3f} s   "
            f"ratio {a3 / b2:5.2f}   (2 renders per site)"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
