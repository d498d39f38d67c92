"""Runtime verification: run a built image as Kubernetes "restricted" would and prove it serves.

No image is released that was not run: every test records its report against the image id
(state.py), and release/push refuse ids whose last test failed or that were never tested.
The checks themselves live in checks.py, the containers in runner.py.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import docker.errors

from imgforge.config import Catalog, Site
from imgforge.engine import docker_client
from imgforge.errors import DockerError, NotFound
from imgforge.render import prepare
from imgforge.verify.checks import CheckResult, Expect, VerifyReport
from imgforge.verify.state import last_result, record_result

# runner (and with it testcontainers) is imported by the functions that start containers, so
# `from imgforge.verify.state import ...` in release/push stays cheap.

__all__ = ["CheckResult", "VerifyReport", "last_result", "run_site", "run_sites"]


def expectation(catalog: Catalog, site: Site) -> Expect:
    """What the site's image must serve and hide: the same listing render gives the build.

    Hidden files are left out of the image by render, and are still probed: an image built some
    other way (or by an older imgforge) may hold them.
    """
    rendered = prepare(catalog, site)
    return Expect.for_site(site, rendered.content.path, rendered.content_files, rendered.left_out)


def run_site(catalog: Catalog, site: Site, image: str | None = None) -> VerifyReport:
    """Test ``image`` (default: the catalog's ``site.reference``) and record the result."""
    with _interruptible():
        return _run(catalog, site, image, threading.Event())


def run_sites(catalog: Catalog, sites: list[Site]) -> list[VerifyReport]:
    """Test several sites' catalog images at once (each run is itself concurrent)."""
    cancel = threading.Event()
    with _interruptible(), ThreadPoolExecutor(max(1, len(sites)), thread_name_prefix="imgforge-sites") as pool:
        futures = [pool.submit(_run, catalog, site, None, cancel) for site in sites]
        try:
            return [f.result() for f in futures]
        except BaseException:
            cancel.set()  # the other runs stop polling and remove their containers
            raise


def _run(catalog: Catalog, site: Site, image: str | None, cancel: threading.Event) -> VerifyReport:
    from imgforge.verify import runner

    reference = image or site.reference
    client = docker_client()
    image_id, config = _inspect_image(client, reference)
    expect = expectation(catalog, site)
    checks = runner.verify_image(client, image_id, config, expect, cancel)
    report = VerifyReport(site.name, reference, image_id, checks)
    record_result(image_id, report.to_dict())
    return report


def _inspect_image(client, reference: str) -> tuple[str, dict]:
    """Image id and config of ``reference``; NotFound names the image and how to make it."""
    try:
        image = client.images.get(reference)
    except docker.errors.ImageNotFound:
        raise NotFound(
            f"image {reference} not found in the Docker engine: build it first (`imgforge build SITE`) or pass --image"
        ) from None
    except docker.errors.APIError as e:
        raise DockerError(f"cannot inspect {reference}: {e.explanation or e}") from e
    return image.id, image.attrs.get("Config") or {}


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C while containers run, so ``finally`` still removes them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def to_interrupt(signum, frame):
        raise KeyboardInterrupt()

    previous = signal.signal(signal.SIGTERM, to_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
