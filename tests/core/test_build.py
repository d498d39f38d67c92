"""Real docker builds through the Engine API, on the locally made Debian bases."""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
import urllib.error
import urllib.request

import docker.errors
import pytest

from imgforge import build, config
from imgforge.content_manifest import LABEL
from imgforge.errors import EXIT_BUILD, EXIT_DOCKER, BuildFailed

pytestmark = pytest.mark.docker


@pytest.fixture
def cleanup_images(docker_client):
    refs: list[str] = []
    yield refs
    for ref in refs:
        with contextlib.suppress(docker.errors.APIError):
            docker_client.images.remove(ref, force=True)


def _serve_once(client, image_id: str, port: int, user: str, path: str = "/") -> tuple[int, bytes]:
    """Run the image as Kubernetes "restricted" would and fetch one path over loopback."""
    container = client.containers.run(
        image_id,
        detach=True,
        user=user,
        read_only=True,
        tmpfs={"/tmp": "rw,size=16m"},
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        ports={f"{port}/tcp": ("127.0.0.1", None)},
        labels={"io.imgforge.owner": os.environ["IMGFORGE_OWNER"]},
    )  # see tests/conftest.py
    try:
        container.reload()
        host_port = container.ports[f"{port}/tcp"][0]["HostPort"]
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{host_port}{path}", timeout=2) as resp:
                    return resp.status, resp.read()
            except urllib.error.HTTPError as e:
                return e.code, b""
            except OSError as e:
                if time.monotonic() > deadline:
                    raise AssertionError(container.logs().decode()) from e
                time.sleep(0.05)
    finally:
        container.remove(force=True)


@pytest.mark.slow
def test_two_sites_with_different_settings_build_and_serve(
    make_catalog, nginx_base, debian_base, docker_client, cleanup_images, tmp_path
):
    root = make_catalog(
        {
            "spa": {"profile": "prebuilt", "base_image": nginx_base, "fallback": "spa", "tag": "v1.0.0"},
            "apt": {
                "profile": "debian",
                "base_image": debian_base,
                "fallback": "404",
                "uid": 10000,
                "gid": 10001,
                "port": 9000,
                "tag": "v2.3.4",
                "description": "installs nginx-light with apt",
            },
        }
    )
    catalog = config.load_catalog(root)
    results = {}
    for name in ("spa", "apt"):
        site = catalog.site(name)
        cleanup_images.append(site.reference)
        results[name] = build.build_site(catalog, site, out_dir=tmp_path / name)
        assert not results[name].skipped
    for name, (user, port) in {"spa": ("100:101", 8080), "apt": ("10000:10001", 9000)}.items():
        attrs = docker_client.images.get(results[name].id).attrs["Config"]
        assert attrs["User"] == user
        assert f"{port}/tcp" in attrs["ExposedPorts"]
        assert f"LISTEN_PORT={port}" in attrs["Env"]
        assert attrs["StopSignal"] == "SIGQUIT"
        labels = attrs["Labels"]
        assert labels["org.opencontainers.image.version"] == catalog.site(name).tag
        assert labels[build.DIGEST_LABEL] == results[name].inputs_digest
        assert labels[LABEL] == results[name].manifest_digest == results[name].manifest.digest
        for key in ("source", "revision", "created", "title"):
            assert labels[f"org.opencontainers.image.{key}"] not in ("", "unknown"), key
    index = (catalog.root / catalog.site("spa").source.path / "www-data" / "index.html").read_bytes()
    assert _serve_once(docker_client, results["spa"].id, 8080, "100:101") == (200, index)
    assert _serve_once(docker_client, results["spa"].id, 8080, "100:101", "/no/such/page") == (200, index)
    assert _serve_once(docker_client, results["apt"].id, 9000, "10000:10001") == (200, index)
    assert _serve_once(docker_client, results["apt"].id, 9000, "10000:10001", "/no/such/page") == (404, b"")


def test_unchanged_inputs_are_skipped_and_changes_rebuild(
    make_catalog, nginx_base, build_file_tree, cleanup_images, tmp_path
):
    unique = f"{time.time_ns()}"  # images of earlier runs (same inputs) would otherwise be reused
    content = build_file_tree(tmp_path / "src", {"www-data/index.html": f"<h1>v1 {unique}</h1>\n"})
    catalog = config.load_catalog(make_catalog({"s": {"source": {"path": str(content)}, "tag": "v0.0.9"}}))
    site = catalog.site("s")
    cleanup_images.append(site.reference)
    first = build.build_site(catalog, site)
    second = build.build_site(catalog, site)
    assert (first.skipped, second.skipped) == (False, True)
    assert second.id == first.id
    assert second.inputs_digest == first.inputs_digest
    forced = build.build_site(catalog, site, force=True)
    assert not forced.skipped
    assert forced.inputs_digest == first.inputs_digest
    (content / "www-data" / "index.html").write_text(f"<h1>v2 {unique}</h1>\n")
    changed = build.build_site(catalog, site)
    cleanup_images.extend([first.id, forced.id, changed.id])
    assert not changed.skipped
    assert changed.inputs_digest != first.inputs_digest


def test_broken_nginx_config_fails_the_build_with_nginx_message(
    make_catalog, nginx_base, docker_client, cleanup_images
):
    broken_base = "imgforge-test/nginx-without-mime-types:1"
    cleanup_images.append(broken_base)
    docker_client.images.build(
        fileobj=io.BytesIO(f"FROM {nginx_base}\nRUN rm /etc/nginx/mime.types\n".encode()), tag=broken_base, rm=True
    )
    catalog = config.load_catalog(make_catalog({"b": {"base_image": broken_base}}))
    cleanup_images.append(catalog.site("b").reference)
    with pytest.raises(BuildFailed) as err:
        build.build_site(catalog, catalog.site("b"))
    message = str(err.value)
    assert "nginx: [emerg]" in message
    assert "/etc/nginx/mime.types" in message
    assert "imgforge-entrypoint nginx -e stderr -t" in err.value.step
    assert any("[emerg]" in line for line in err.value.log_tail)
    assert err.value.exit_code == EXIT_BUILD


def test_unreachable_base_image_is_a_clear_build_error(make_catalog, cli_process):
    # A registry on a closed loopback port: the pull fails fast and no traffic leaves the machine.
    root = make_catalog({"m": {"base_image": "127.0.0.1:9/nothing/here:1"}})
    proc = cli_process("build", "m", "--root", str(root))
    assert proc.returncode == EXIT_BUILD
    assert proc.stderr.startswith("error: build of 'm' failed at step '1/")
    assert proc.stderr.count("\n") == 1


def test_engine_unreachable_is_one_line_with_a_hint(make_catalog, cli_process, tmp_path):
    root = make_catalog({"s": {}})
    proc = cli_process("build", "s", "--root", str(root), env={"DOCKER_HOST": f"unix://{tmp_path}/no.sock"})
    assert proc.returncode == EXIT_DOCKER
    assert proc.stderr.startswith("error: cannot reach the Docker engine")
    assert "DOCKER_HOST" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_build_all_reports_unavailable_sites_and_builds_the_rest(make_catalog, nginx_base, cli_process, cleanup_images):
    root = make_catalog({"ok": {}, "nosource": {"source": {"content_dir": "www-data"}}})
    cleanup_images.append("127.0.0.1:5000/test/ok:v0.0.1")
    proc = cli_process("build", "--all", "--json", "--root", str(root))
    assert proc.returncode == 0, proc.stderr
    rows = {r["site"]: r for r in json.loads(proc.stdout)}
    assert rows["ok"]["status"] in ("built", "skipped")
    assert rows["ok"]["id"].startswith("sha256:")
    assert rows["ok"]["manifest_digest"].startswith("sha256:")
    assert rows["nosource"]["status"] == "unavailable"
    assert "no path, git URL or image" in rows["nosource"]["detail"]
    again = json.loads(cli_process("build", "ok", "--json", "--root", str(root)).stdout)
    assert again["skipped"] is True
    assert again["image"] == "127.0.0.1:5000/test/ok:v0.0.1"


def test_images_derived_from_a_build_are_never_reused_as_it(
    make_catalog, nginx_base, docker_client, build_file_tree, cleanup_images, tmp_path
):
    """A child image inherits the inputs-digest label; only imgforge's own build may be reused."""
    content = build_file_tree(tmp_path / "src", {"www-data/index.html": f"<p>{time.time_ns()}</p>\n"})
    catalog = config.load_catalog(make_catalog({"d": {"source": {"path": str(content)}}}))
    site = catalog.site("d")
    built = build.build_site(catalog, site)
    child, _ = docker_client.images.build(
        fileobj=io.BytesIO(f"FROM {built.id}\nUSER 0:0\nRUN touch /child\n".encode()),
        tag="imgforge-test/child:1",
        rm=True,
    )
    cleanup_images.extend(["imgforge-test/child:1", site.reference])
    assert child.labels[build.DIGEST_LABEL] == built.inputs_digest  # the trap: the label is inherited
    assert build.EngineLookup().built(built.inputs_digest) == built.id
    again = build.build_site(catalog, site)
    assert again.skipped
    assert again.id == built.id
