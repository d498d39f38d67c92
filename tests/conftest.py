"""Fixtures shared by every test folder. Folder-specific fixtures live in that folder's conftest.

Integration tests need a Docker engine. In CI (CI=true) a missing engine is a failure, never a
skip; on a laptop without one the Docker tests skip with the reason.

The engine may be shared (a laptop's own Docker, other test sessions): every container the tests
start carries ``io.imgforge.owner=$IMGFORGE_OWNER`` (imgforge adds it to its own; ./test.sh sets
the value for the run, a bare ``pytest`` gets one here), and clean-up looks for that label only.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_CONTENT = REPO / "examples" / "example-site" / "www-data"
# Made by `imgforge base bootstrap debian [--with-nginx]` (./test.sh runs it before pytest).
DEBIAN_BASE = "imgforge/debian:bookworm"
NGINX_BASE = "imgforge/nginx-debian:bookworm"
# Before anything imports testcontainers (it reads this once): the tests remove their own
# containers by label, and Ryuk's image cannot be pulled everywhere. The environment may say otherwise.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
os.environ.setdefault("IMGFORGE_OWNER", f"pytest-{uuid.uuid4().hex[:12]}")


def run_main(*args: str) -> tuple[int, str, str]:
    """``imgforge ARGS`` in this process through the real entry point: (exit code, stdout, stderr)."""
    from imgforge.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return code, out.getvalue(), err.getvalue()


def run_process(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    drop: tuple[str, ...] = (),
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """``imgforge ARGS`` in a process of its own, as a user runs it (``--debug`` off unless asked).

    ``env`` adds to this process's environment; ``drop`` names variables the command must not see.
    """
    base = {k: v for k, v in os.environ.items() if k not in drop}
    return subprocess.run(
        [sys.executable, "-m", "imgforge", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env={**base, "IMGFORGE_DEBUG": "", **(env or {})},
    )


@pytest.fixture
def cli_main() -> Callable[..., tuple[int, str, str]]:
    """The one in-process CLI runner (see ``run_main``)."""
    return run_main


@pytest.fixture
def cli_process() -> Callable[..., subprocess.CompletedProcess[str]]:
    """The one CLI runner in its own process (see ``run_process``)."""
    return run_process


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path_factory, monkeypatch):
    """Keep verify records and the source cache of each test away from the user's own."""
    state = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("IMGFORGE_STATE_DIR", str(state))
    monkeypatch.setenv("IMGFORGE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.delenv("IMGFORGE_ROOT", raising=False)


@pytest.fixture
def build_file_tree() -> Callable[[Path, dict], Path]:
    """Write ``{"a/b.txt": "text", "c.bin": b"bytes"}`` under a folder; str values are dedented."""

    def build(root: Path, files: dict[str, str | bytes]) -> Path:
        for rel, data in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(data, bytes):
                path.write_bytes(data)
            else:
                path.write_text(textwrap.dedent(data).lstrip("\n"), encoding="utf-8")
        return root

    return build


@pytest.fixture
def make_catalog(tmp_path, build_file_tree) -> Callable[..., Path]:
    """A throwaway catalog: ``make_catalog(sites={"a": {...toml keys...}}, settings="...")``.

    Sites default to the example content and the local prebuilt nginx base, so they build here.
    """
    import tomlkit

    def make(sites: dict[str, dict] | None = None, settings: str = "", root: Path | None = None) -> Path:
        root = root or tmp_path / "catalog"
        build_file_tree(root, {"imgforge.toml": settings or "[defaults]\n"})
        (root / "sites").mkdir(exist_ok=True)
        for name, fields in (sites or {}).items():
            data = {
                "image": f"127.0.0.1:5000/test/{name}",
                "tag": "v0.0.1",
                "profile": "prebuilt",
                "base_image": NGINX_BASE,
                "source": {"path": str(EXAMPLE_CONTENT.parent)},
                **fields,
            }
            data = {key: value for key, value in data.items() if value is not None}  # None: drop a default
            (root / "sites" / f"{name}.toml").write_text(tomlkit.dumps(data), encoding="utf-8")
        return root

    return make


@pytest.fixture(scope="session")
def docker_client():
    """A live Docker client; fails in CI, skips elsewhere, when no engine answers."""
    from imgforge.engine import docker_client as connect
    from imgforge.errors import DockerUnavailable

    try:
        return connect()
    except DockerUnavailable as e:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs a Docker engine: {e}")
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def nginx_base(docker_client) -> str:
    """The local Debian base with nginx preinstalled (profile ``prebuilt``)."""
    _require_image(docker_client, NGINX_BASE)
    return NGINX_BASE


@pytest.fixture(scope="session")
def debian_base(docker_client) -> str:
    """The local Debian minbase (profile ``debian`` installs nginx-light into it with apt)."""
    _require_image(docker_client, DEBIAN_BASE)
    return DEBIAN_BASE


def _require_image(client, name: str) -> None:
    import docker.errors

    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        pytest.fail(
            f"base image {name} missing: run `imgforge base bootstrap debian --with-nginx` "
            "(./test.sh does this before the tests)"
        )


def remove_test_image(client, image_id: str, *repositories: str) -> None:
    """Remove what a test made, and nothing that names the same image besides: the tags and digest
    references under the test's own ``repositories``; the image goes with its last name. An image
    that someone else also names (same content, same ID: oci builds are reproducible) keeps their
    names and stays; an untagged image is removed only if nothing uses it (no force anywhere)."""
    import docker.errors

    try:
        image = client.images.get(image_id)
    except docker.errors.ImageNotFound:
        return
    names = [*image.tags, *(image.attrs.get("RepoDigests") or [])]
    ours = [n for n in names if any(n.startswith((f"{r}:", f"{r}@")) or n == r for r in repositories)]
    for name in ours:
        with contextlib.suppress(docker.errors.ImageNotFound, docker.errors.APIError):
            client.images.remove(name)
    if not names:
        with contextlib.suppress(docker.errors.ImageNotFound, docker.errors.APIError):
            client.images.remove(image_id)  # no force: a container of someone else keeps it
