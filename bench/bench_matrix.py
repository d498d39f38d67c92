"""Wall time of `imgforge matrix --changed-since` on a catalog of 500 sites with 10,000 commits.

The history is written with one `git fast-import` stream (seconds, not the minutes 10,000
`git commit` calls take). Every commit after the first edits one site: its content or its TOML,
round-robin, so any revision range has a known spread of changed sites. Target: at most 1 s for
the command, startup included. Prints figures only; run with `.venv/bin/python bench/bench_matrix.py`.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SITES = 500
COMMITS = 10_000
RUNS = 5
TARGET_S = 1.0


def _blob(path: str, text: str) -> bytes:
    data = text.encode()
    return b"M 100644 inline " + path.encode() + b"\ndata %d\n" % len(data) + data + b"\n"


def _commit(n: int, message: str, changes: list[bytes], first: bool) -> bytes:
    msg = message.encode()
    head = b"commit refs/heads/main\nmark :%d\ncommitter Bench <bench@example.invalid> %d +0000\ndata %d\n%s\n" % (
        n,
        1_700_000_000 + 60 * n,
        len(msg),
        msg,
    )
    parent = b"" if first else b"from :%d\n" % (n - 1)
    return head + parent + b"".join(changes) + b"\n"


def site_toml(i: int, rev: int = 0) -> str:
    return (
        f'# site {i}, revision {rev}\nimage = "registry.example.invalid/bench/site-{i:03d}"\n'
        f'tag = "v1.0.{rev}"\nprofile = "prebuilt"\n\n[source]\npath = "content/site-{i:03d}"\n'
    )


def make_history(repo: Path) -> None:
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    stream = [
        _commit(
            1,
            "catalog",
            [
                _blob("imgforge.toml", "[defaults]\nport = 8080\n"),
                _blob("templates/nginx.conf.j2", "server { listen {{ port }}; }\n"),
                *(_blob(f"sites/site-{i:03d}.toml", site_toml(i)) for i in range(SITES)),
                *(_blob(f"content/site-{i:03d}/www-data/index.html", f"<h1>{i}</h1>\n") for i in range(SITES)),
                *(_blob(f"content/site-{i:03d}/www-data/css/site.css", "body{margin:0}\n") for i in range(SITES)),
            ],
            first=True,
        )
    ]
    for n in range(2, COMMITS + 1):
        i = n % SITES
        if n % 2:
            change = _blob(f"content/site-{i:03d}/www-data/index.html", f"<h1>{i}</h1><p>edit {n}</p>\n")
        else:
            change = _blob(f"sites/site-{i:03d}.toml", site_toml(i, n))
        stream.append(_commit(n, f"site-{i:03d}: edit {n}", [change], first=False))
    subprocess.run(["git", "fast-import", "--quiet"], cwd=repo, input=b"".join(stream), check=True)
    subprocess.run(["git", "reset", "-q", "--hard", "main"], cwd=repo, check=True)


def time_cmd(cmd: list[str]) -> tuple[float, float, str]:
    """Median and best wall time of RUNS runs (the best shows the cost without CPU contention)."""
    times, out = [], ""
    for _ in range(RUNS):
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd[:2])} failed: {proc.stderr.strip()}")
        out = proc.stdout
    return statistics.median(times), min(times), out


def main() -> None:
    imgforge = shutil.which("imgforge", path=str(Path(sys.executable).parent)) or "imgforge"
    work = Path(tempfile.mkdtemp(prefix="imgforge-bench-matrix-"))
    os.environ.setdefault("IMGFORGE_CACHE_DIR", str(work / "cache"))
    try:
        repo = work / "catalog"
        start = time.perf_counter()
        make_history(repo)
        made = time.perf_counter() - start
        count = subprocess.run(
            ["git", "rev-list", "--count", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        print(f"catalog: {SITES} sites, {count} commits, made in {made:.2f} s with git fast-import")
        import json

        from imgforge.config import load_catalog
        from imgforge.matrix import sites_to_build

        cases = [
            ("--changed-since HEAD~1", "HEAD~1"),
            ("--changed-since HEAD~100", "HEAD~100"),
            (
                "--changed-since <first commit>",
                subprocess.run(
                    ["git", "rev-list", "--max-parents=0", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
                ).stdout.strip(),
            ),
            ("--changed-since HEAD (nothing)", "HEAD"),
        ]
        floor, floor_best, _ = time_cmd([sys.executable, "-c", "import imgforge.cli"])
        print(
            f"floor: Python start-up + `import imgforge.cli` (every command pays it): "
            f"median {floor:.3f} s, best {floor_best:.3f} s"
        )
        print(f"{'imgforge matrix --format github':34} {'sites':>6} {'median':>8} {'best':>8} {'in-process':>11}")
        worst = 0.0
        for label, ref in cases:
            wall, best, out = time_cmd(
                [imgforge, "matrix", "--root", str(repo), "--changed-since", ref, "--format", "github"]
            )
            sites = len(json.loads(out)["include"])
            start = time.perf_counter()
            sites_to_build(load_catalog(repo), ref, repo)
            inproc = time.perf_counter() - start
            worst = max(worst, wall)
            print(f"{label:34} {sites:>6} {wall:>7.3f}s {best:>7.3f}s {inproc:>10.3f}s")
        wall, best, out = time_cmd([imgforge, "matrix", "--root", str(repo), "--format", "github"])
        print(
            f"{'(no --changed-since: all sites)':34} {len(json.loads(out)['include']):>6} {wall:>7.3f}s {best:>7.3f}s"
        )
        print(
            f"worst median with --changed-since: {worst:.3f} s; target ≤ {TARGET_S:.1f} s: "
            f"{'met' if worst <= TARGET_S else 'NOT met'} (load average now {os.getloadavg()[0]:.1f} "
            f"on {os.cpu_count()} CPUs)"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
