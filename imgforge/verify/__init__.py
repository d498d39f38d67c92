"""Runtime verification: run a built image as Kubernetes "restricted" would and prove it serves.

An image is judged by the content manifest its build wrote into it (``content_manifest``): what it
must serve, hide and answer with. So a test needs the image and an engine, nothing else: no
catalog, no content folder, no guess from what a git ref or a folder holds today. A catalog site
only names the image (``site.reference``) and the site its manifest must be of.

No image is released that was not run: every test records its report against the image id
(state.py), and release/push refuse ids whose last test failed or that were never tested.
The checks themselves live in checks.py, the containers in runner.py and fleet.py.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from types import FrameType
from typing import Any

import docker
import docker.errors

from imgforge.config import Catalog, Site
from imgforge.engine import docker_client
from imgforge.errors import DockerError, NotFound
from imgforge.verify.checks import CheckResult, VerifyReport
from imgforge.verify.state import last_result, record_result

# runner (and with it testcontainers) is imported by the functions that start containers, so
# `from imgforge.verify.state import ...` in release/push stays cheap.

__all__ = ["CheckResult", "VerifyReport", "last_result", "run_image", "run_site", "run_sites"]


def run_image(reference: str, *, site: str | None = None) -> VerifyReport:
    """Test the image ``reference`` (a tag or an image id) and record the result.

    ``site``, when given, is the site the image's manifest must be of (else ``content_manifest``
    fails); the report names it, or the manifest's site when none is given.
    """
    with _interruptible():
        return _run(reference, site, threading.Event())


def run_site(catalog: Catalog, site: Site, image: str | None = None) -> VerifyReport:
    """Test ``image`` (default: the catalog's ``site.reference``) as an image of ``site``.

    The catalog only names the image; everything the checks expect is read out of the image.
    """
    return run_image(image or site.reference, site=site.name)


def run_sites(catalog: Catalog, sites: list[Site]) -> list[VerifyReport]:
    """Test several sites' catalog images at once (each run is itself concurrent)."""
    cancel = threading.Event()
    with _interruptible(), ThreadPoolExecutor(max(1, len(sites)), thread_name_prefix="imgforge-sites") as pool:
        futures = [pool.submit(_run, site.reference, site.name, cancel) for site in sites]
        try:
            return [f.result() for f in futures]
        except BaseException:
            cancel.set()  # the other runs stop polling and remove their containers
            raise


def _run(reference: str, site: str | None, cancel: threading.Event) -> VerifyReport:
    from imgforge.verify import runner

    client = docker_client()
    image_id, config = _inspect_image(client, reference)
    named, checks = runner.verify_image(client, image_id, config, f"image {reference}", site, cancel)
    report = VerifyReport(named, reference, image_id, checks)
    record_result(image_id, report.to_dict())
    return report


def _inspect_image(client: docker.DockerClient, reference: str) -> tuple[str, dict[str, Any]]:
    """Image id and config of ``reference``; NotFound names the image and how to make it."""
    try:
        image = client.images.get(reference)
    except docker.errors.ImageNotFound:
        raise NotFound(
            f"image {reference} not found in the Docker engine: build it first (`imgforge build SITE`) or pass --image"
        ) from None
    except docker.errors.APIError as e:
        raise DockerError(f"cannot inspect {reference}: {e.explanation or e}") from e
    config: dict[str, Any] = image.attrs.get("Config") or {}
    return str(image.id), config


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C while containers run, so ``finally`` still removes them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def to_interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt()

    previous = signal.signal(signal.SIGTERM, to_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
