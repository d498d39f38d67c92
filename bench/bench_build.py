"""Build benchmarks (issue: core pipeline). Prints figures from one run; asserts nothing.

1. warm `imgforge build --all` with nothing changed vs plain `docker build` of the same rendered
   contexts (layer cache warm for both): target at least 5x faster;
2. cold `imgforge build` vs plain `docker build` of its own rendered context, both without layer
   cache: overhead ratio, target at most 1.10;
3. image size minus base size minus content size: target at most 64 KiB;
4. the oci builder (bench_oci.py; ``--oci`` runs only this part): warm ``build --all --builder oci``
   vs plain ``docker build`` (target >= 20x), cold (target <= 0.5x), the bytes a one-file change
   uploads, the rebase of every site onto a moved base (target <= 2 s).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import time

import bench_oci
import docker
import docker.errors
from _common import NGINX_BASE, imgforge, make_catalog, median, photo_site, row, timed

COLD_RUNS = 3
PHOTO_SIZE = 512 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=10, help="sites in the catalog (the fleet has 10)")
    parser.add_argument("--mib", type=int, default=20, help="MiB of photos per site (default 20)")
    parser.add_argument("--oci", action="store_true", help="only the oci builder's figures")
    args = parser.parse_args()
    global SITES, PHOTOS
    SITES, PHOTOS = args.sites, max(1, args.mib * 2**20 // PHOTO_SIZE)
    client = docker.from_env()
    root = make_catalog({})
    sites = {}
    for i in range(SITES):
        src = photo_site(root / "content" / f"site{i}", PHOTOS, PHOTO_SIZE, seed=i)
        sites[f"site{i}"] = {"port": 8080 + i, "fallback": "spa" if i % 2 else "404", "source": {"path": str(src)}}
    make_catalog(sites, root)
    row("content per site", f"{PHOTOS * PHOTO_SIZE / 2**20:.0f} MiB", f"({PHOTOS} photos + the example site)")
    contexts = root / "contexts"
    made: set[str] = set()  # every image id this run produced: the only ones it removes

    def note_images() -> None:
        for img in client.images.list(name="127.0.0.1:5000/bench/*") + client.images.list(name="bench-plain/*"):
            made.add(img.id)

    try:
        for i in range(SITES):  # the contexts plain docker build gets, rendered by imgforge itself
            imgforge("render", f"site{i}", "--out", str(contexts / f"site{i}"), "--root", str(root))
        if args.oci:
            bench_oci.run(root, contexts, SITES, None, made, client)
            return
        imgforge("build", "--all", "--root", str(root))  # first build fills the cache for both
        note_images()
        warm_imgforge = median([timed(lambda: imgforge("build", "--all", "--root", str(root))) for _ in range(3)])

        def plain_all() -> None:
            for i in range(SITES):
                subprocess.run(
                    ["docker", "build", "-q", "-t", f"bench-plain/site{i}:warm", str(contexts / f"site{i}")],
                    check=True,
                    capture_output=True,
                )

        plain_all()
        note_images()
        warm_plain = median([timed(plain_all) for _ in range(3)])
        row(f"warm build --all ({SITES} sites), imgforge", f"{warm_imgforge:.3f} s")
        row(f"warm build --all ({SITES} sites), plain docker build", f"{warm_plain:.3f} s")
        row("warm speed-up (plain / imgforge)", f"{warm_plain / warm_imgforge:.1f}x", "target >= 5x")

        cold_imgforge, cold_plain = [], []
        for _ in range(COLD_RUNS):
            cold_imgforge.append(timed(lambda: imgforge("build", "site0", "--no-cache", "--root", str(root))))
            note_images()
            cold_plain.append(
                timed(
                    lambda: subprocess.run(
                        [
                            "docker",
                            "build",
                            "-q",
                            "--no-cache",
                            "-t",
                            "bench-plain/site0:cold",
                            str(contexts / "site0"),
                        ],
                        check=True,
                        capture_output=True,
                    )
                )
            )
            note_images()
        ci, cp = median(cold_imgforge), median(cold_plain)
        row("cold build (no layer cache), imgforge", f"{ci:.3f} s")
        row("cold build (no layer cache), plain docker build", f"{cp:.3f} s")
        row("cold overhead ratio (imgforge / plain)", f"{ci / cp:.3f}", "target <= 1.10")

        image = client.images.get("127.0.0.1:5000/bench/site0:v0.0.1")
        base = client.images.get(NGINX_BASE)
        content = sum(p.stat().st_size for p in (contexts / "site0" / "html").rglob("*") if p.is_file())
        extra = image.attrs["Size"] - base.attrs["Size"] - content
        row("image size - base size - content size", f"{extra / 1024:.1f} KiB", "target <= 64 KiB")
        bench_oci.run(root, contexts, SITES, warm_plain, made, client)
    finally:
        note_images()
        for image_id in made:  # by the ids this run made, never by a filter that matches others' images
            with contextlib.suppress(docker.errors.ImageNotFound, docker.errors.APIError):
                client.images.remove(image_id, force=True)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"(bench_build took {time.perf_counter() - start:.0f} s)")
