"""Benchmark: list 1,000 tags in pages of 100 from a local registry, imgforge vs skopeo and curl;
and ``imgforge tags`` (table and --json) for a repository with 20,000 tags.

Run: ``.venv/bin/python bench/bench_tags.py [--tags 1000] [--page 100] [--runs 5] [--big 20000]``

Starts Debian's ``docker-registry`` (distribution 2.8, htpasswd auth) on a free 127.0.0.1 port,
fills one repository with N tags (one manifest PUT under N tags), and times:

- imgforge's client (the code behind ``imgforge tags``) in-process, and ``imgforge tags --json``
  as a whole process (Python start-up included);
- ``skopeo list-tags`` (which sends no ``n=``) and a ``curl`` loop that follows
  ``Link: rel="next"`` with ``n=100``, on the same registry.

distribution 2.8 ignores ``n`` and ``last`` on tags/list and answers all tags at once, so the
paged figures go through the test suite's paging front (which pages the registry's real list as
distribution v3 does); the direct figures are one request.

Large repositories: ``--big N`` fills one repository with N tags and another with N/2 (one
manifest PUT through the API, the other tags written as distribution's own tag link files, since
N PUTs through bcrypt basic auth would take minutes) and times ``imgforge tags`` as a table and
as ``--json`` for both: a ratio near 2 between N and N/2 is linear, near 4 quadratic. Then the
parts in-process at N (listing, ordering, table, JSON), next to what they replaced: rich's Table
(about 1 ms per row) and sorting by semver's own comparisons. Prints medians; asserts nothing.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from imgforge.registry import (  # noqa: E402
    Credentials,
    RegistryClient,
    versions,
)
from imgforge.release import TagListing  # noqa: E402
from tests.registry.conftest import _start_registry, _stop, paging_front, seed_tags  # noqa: E402


def median_time(fn, runs: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def curl_loop(base: str, repo: str, user: str, password: str, page: int) -> int:
    """What a shell script does: curl pages, read the Link header, ask for the next one."""
    url, count = f"{base}/v2/{repo}/tags/list?n={page}", 0
    while url:
        out = subprocess.run(
            ["curl", "-s", "-D", "-", "-u", f"{user}:{password}", url], capture_output=True, text=True, check=True
        ).stdout
        head, _, body = out.partition("\r\n\r\n")
        count += body.count('"v')
        link = next(
            (line.split("<", 1)[1].split(">", 1)[0] for line in head.splitlines() if line.lower().startswith("link:")),
            None,
        )
        url = base + link if link else None
    return count


def big_tags(n: int) -> list[str]:
    """``n`` distinct tags: releases, some pre-releases, and a few that are not semver."""
    tags = [f"v{i // 400}.{(i // 20) % 20}.{i % 20}" + ("-rc.1" if i % 7 == 0 else "") for i in range(n - 2)]
    return [*tags, "latest", "dev-0badc0de"]


def fill_on_disk(reg, tmp: Path, repo: str, tags: list[str]) -> None:
    """One tag through the API, the rest as the same two link files distribution writes per tag."""
    digest = seed_tags(reg, repo, tags[:1])
    root = tmp / "data" / "docker" / "registry" / "v2" / "repositories" / repo / "_manifests" / "tags"
    for tag in tags[1:]:
        for folder in (root / tag / "current", root / tag / "index" / "sha256" / digest.split(":", 1)[1]):
            folder.mkdir(parents=True)
            (folder / "link").write_text(digest)


def big_repositories(reg, tmp: Path, catalog: Path, env: dict, imgforge_bin: str, creds, n: int, runs: int) -> None:
    from rich.console import Console
    from rich.table import Table

    from imgforge.cli.release import _VersionsTable

    sizes = {"big": n, "half": n // 2}
    start = time.perf_counter()
    for name, size in sizes.items():
        fill_on_disk(reg, tmp, f"bench/{name}", big_tags(size))
        (catalog / "sites" / f"{name}.toml").write_text(f'image = "{reg.host}/bench/{name}"\ntag = "v1.2.3"\n')
    print(f"\nfilled bench/big with {n} and bench/half with {n // 2} tags in {time.perf_counter() - start:.2f} s")

    def cli(site: str, *extra: str) -> float:
        t, _ = median_time(
            lambda: subprocess.run(
                [imgforge_bin, "tags", site, *extra, "--root", str(catalog)], env=env, check=True, capture_output=True
            ),
            runs,
        )
        return t

    start_up, _ = median_time(
        lambda: subprocess.run(
            [imgforge_bin, "sites", "--root", str(catalog)], env=env, check=True, capture_output=True
        ),
        runs,
    )
    print(f"median of {runs} runs, whole processes ({start_up * 1000:.1f} ms of which are start-up, `imgforge sites`):")
    for label, extra in (("table", ()), ("--json", ("--json",))):
        full, half = cli("big", *extra), cli("half", *extra)
        ratio = (full - start_up) / max(half - start_up, 1e-9)
        print(
            f"  {full * 1000:8.1f} ms  `imgforge tags` {label}, {n} tags   "
            f"({half * 1000:.1f} ms for {n // 2}; ratio past start-up {ratio:.2f}, 2 is linear)"
        )

    with RegistryClient(reg.host, credentials=creds) as c:
        t_list, raw = median_time(lambda: c.list_tags("bench/big"), runs)
    t_split, (found, other) = median_time(lambda: versions.split(raw), runs)
    listing = TagListing("big", f"{reg.host}/bench/big", "v1.2.3", found, other)
    sink = Console(file=io.StringIO(), width=100)
    t_table, _ = median_time(lambda: sink.print(_VersionsTable(listing), soft_wrap=True), runs)
    t_json, _ = median_time(lambda: json.dumps(listing.to_dict(), indent=2), runs)

    def old_table() -> None:
        table = Table("version", "", title=listing.repository, caption=f"{len(found)} versions")
        for v in reversed(found):
            table.add_row(v.tag, "← catalog" if v.tag == listing.current else "")
        sink.print(table)

    t_rich, _ = median_time(old_table, 1)
    parsed = [v for v in map(versions.parse, raw) if v is not None]
    t_cmp, _ = median_time(lambda: sorted(parsed), 1)
    print(f"in-process parts, {n} tags (the registry's order is lexical, not semver):")
    for seconds, name in (
        (t_list, "list_tags (one request: distribution 2.8 does not page)"),
        (t_split, "versions.split: parse and order by precomputed key"),
        (t_table, "tags table as rich Segments"),
        (t_json, "--json document (to_dict + dumps)"),
        (t_rich, "  before: rich Table of the same rows (one run)"),
        (t_cmp, "  before: ordering by semver's comparisons (one run)"),
    ):
        print(f"  {seconds * 1000:8.1f} ms  {name}")
    print(f"ratio rich Table / Segments:           {t_rich / t_table:.1f}")
    print(f"ratio semver comparisons / sort key:   {t_cmp / max(t_split, 1e-9):.1f} (split includes parsing)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tags", type=int, default=1000)
    parser.add_argument("--page", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--big", type=int, default=20000, help="tags of the large repository (0: skip)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="imgforge-bench-"))
    user, password = "bench", "bench-" + os.urandom(6).hex()
    hashed = subprocess.run(
        ["htpasswd", "-nbB", "-C", "5", user, password], check=True, capture_output=True, text=True
    ).stdout.strip()
    (tmp / "htpasswd").write_text(hashed + "\n")
    reg = _start_registry(tmp, {"htpasswd": {"realm": "bench", "path": str(tmp / "htpasswd")}}, user, password)
    front = paging_front(reg)
    try:
        repo = "bench/site"
        tags = [f"v{i // 100}.{(i // 10) % 10}.{i % 10}" for i in range(args.tags)]
        start = time.perf_counter()
        seed_tags(reg, repo, tags)
        print(f"seeded {len(tags)} tags in {time.perf_counter() - start:.2f} s")
        creds = Credentials(user, password, "bench")

        def imgforge_list(host: str):
            with RegistryClient(host, credentials=creds, page_size=args.page) as c:
                found, _ = versions.split(c.list_tags(repo))
            assert len(found) == args.tags, len(found)
            return found

        env = {**os.environ, "IMGFORGE_REGISTRY_USER": user, "IMGFORGE_REGISTRY_PASSWORD": password}
        catalog = tmp / "catalog"
        (catalog / "sites").mkdir(parents=True)
        (catalog / "imgforge.toml").write_text("[defaults]\n")
        (catalog / "sites" / "site.toml").write_text(f'image = "{reg.host}/{repo}"\ntag = "v0.0.1"\n')
        imgforge_bin = str(Path(sys.executable).with_name("imgforge"))

        def imgforge_cli():
            subprocess.run(
                [imgforge_bin, "tags", "site", "--json", "--root", str(catalog)],
                env=env,
                check=True,
                capture_output=True,
            )

        def skopeo(host: str):
            out = subprocess.run(
                [
                    "skopeo",
                    "list-tags",
                    "--tls-verify=false",
                    "--creds",
                    f"{user}:{password}",
                    f"docker://{host}/{repo}",
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            assert out.count('"v') == args.tags
            return out

        rows = []
        t, _ = median_time(lambda: imgforge_list(front.host), args.runs)
        rows.append((f"imgforge client, {args.tags // args.page} pages of {args.page} (paging front)", t))
        paged = t
        t, _ = median_time(lambda: curl_loop(f"http://{front.host}", repo, user, password, args.page), args.runs)
        rows.append(("curl loop following Link (paging front)", t))
        curl_paged = t
        t, _ = median_time(lambda: imgforge_list(reg.host), args.runs)
        rows.append(("imgforge client, direct (2.8 answers all tags in one page)", t))
        direct = t
        if shutil.which("skopeo"):  # skopeo sends no n= (it follows Link only), so it is timed direct
            t, _ = median_time(lambda: skopeo(reg.host), args.runs)
            rows.append(("skopeo list-tags, direct (one request, process start-up included)", t))
            skopeo_direct = t
        t, _ = median_time(imgforge_cli, args.runs)
        rows.append(("`imgforge tags --json` process, direct", t))
        cli = t

        print(f"\nmedian of {args.runs} runs, {args.tags} tags:")
        for name, seconds in rows:
            print(f"  {seconds * 1000:8.1f} ms  {name}")
        print(f"\ntarget: 1,000 tags in pages of 100 within 1 s -> {paged:.3f} s")
        print(f"ratio imgforge/curl-loop (paged):     {paged / curl_paged:.2f}")
        if shutil.which("skopeo"):
            print(f"ratio imgforge/skopeo (direct):       {direct / skopeo_direct:.2f}")
            print(f"ratio imgforge CLI/skopeo (direct):   {cli / skopeo_direct:.2f}")
        if args.big:
            big_repositories(reg, tmp, catalog, env, imgforge_bin, creds, args.big, max(3, args.runs // 2))
    finally:
        front.stop()
        _stop(reg.proc)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
