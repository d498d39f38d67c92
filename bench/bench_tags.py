"""Benchmark: list 1,000 tags in pages of 100 from a local registry, imgforge vs skopeo and curl.

Run: ``.venv/bin/python bench/bench_tags.py [--tags 1000] [--page 100] [--runs 5]``

Starts Debian's ``docker-registry`` (distribution 2.8, htpasswd auth) on a free 127.0.0.1 port,
fills one repository with N tags (one manifest PUT under N tags), and times:

- imgforge's client (the code behind ``imgforge tags``) in-process, and ``imgforge tags --json``
  as a whole process (Python start-up included);
- ``skopeo list-tags`` (which sends no ``n=``) and a ``curl`` loop that follows
  ``Link: rel="next"`` with ``n=100``, on the same registry.

distribution 2.8 ignores ``n`` and ``last`` on tags/list and answers all tags at once, so the
paged figures go through the test suite's paging front (which pages the registry's real list as
distribution v3 does); the direct figures are one request. Prints medians; asserts nothing.
"""

from __future__ import annotations

import argparse
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

from imgforge.registry import Credentials, RegistryClient  # noqa: E402
from imgforge.registry import versions  # noqa: E402
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
        out = subprocess.run(["curl", "-s", "-D", "-", "-u", f"{user}:{password}", url],
                             capture_output=True, text=True, check=True).stdout
        head, _, body = out.partition("\r\n\r\n")
        count += body.count('"v')
        link = next((line.split("<", 1)[1].split(">", 1)[0] for line in head.splitlines()
                     if line.lower().startswith("link:")), None)
        url = base + link if link else None
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tags", type=int, default=1000)
    parser.add_argument("--page", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="imgforge-bench-"))
    user, password = "bench", "bench-" + os.urandom(6).hex()
    hashed = subprocess.run(["htpasswd", "-nbB", "-C", "5", user, password], check=True,
                            capture_output=True, text=True).stdout.strip()
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
            subprocess.run([imgforge_bin, "tags", "site", "--json", "--root", str(catalog)], env=env,
                           check=True, capture_output=True)

        def skopeo(host: str):
            out = subprocess.run(["skopeo", "list-tags", "--tls-verify=false", "--creds", f"{user}:{password}",
                                  f"docker://{host}/{repo}"], check=True, capture_output=True, text=True).stdout
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
    finally:
        front.stop()
        _stop(reg.proc)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
