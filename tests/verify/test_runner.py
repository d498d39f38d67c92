"""How the containers are run: restricted like a Pod, concurrently, and always removed."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest
import tomlkit

from imgforge import config, verify
from imgforge.cli import main
from imgforge.errors import EXIT_NOT_FOUND
from imgforge.verify import checks, runner
from imgforge.verify.runner import OWNER_LABEL, RUN_LABEL

pytestmark = pytest.mark.docker
MINE = f"{OWNER_LABEL}={os.environ['IMGFORGE_OWNER']}"  # this session's containers (tests/conftest.py)


def _our_containers(client) -> list:
    """This session's verification containers (other sessions may share the engine)."""
    return client.api.containers(all=True, filters={"label": [RUN_LABEL, MINE]})


def test_containers_run_restricted_on_loopback_and_start_concurrently(good, docker_client, monkeypatch):
    """Each of the four containers is inspected right after it started, so none can slip by."""
    seen: dict[str, dict] = {}
    spans: dict[str, tuple[float, float]] = {}
    real_start = runner.Fleet.start

    def inspected_start(self, role, **kwargs):
        began = time.monotonic()
        try:
            container = real_start(self, role, **kwargs)
        finally:
            spans[role] = (began, time.monotonic())
        attrs = docker_client.api.inspect_container(container.get_container_id())
        seen[role] = attrs["HostConfig"] | {"User": attrs["Config"]["User"], "Labels": attrs["Config"]["Labels"]}
        return container

    monkeypatch.setattr(runner.Fleet, "start", inspected_start)
    report = verify.run_site(good.catalog, good.site)
    assert report.ok, report.failed
    assert set(seen) == {"main", "port", "uid", "scan"}
    site_user = f"{good.site.uid}:{good.site.gid}"
    assert {role: host["User"] for role, host in seen.items()} == {
        "main": site_user,
        "port": site_user,
        "uid": checks.OPENSHIFT_USER,
        "scan": "0:0",
    }
    for role, host in seen.items():
        assert host["ReadonlyRootfs"] is True, role
        assert host["CapDrop"] == ["ALL"], role
        assert host["SecurityOpt"] == ["no-new-privileges"], role
        assert host["Labels"][OWNER_LABEL] == os.environ["IMGFORGE_OWNER"], role
        assert RUN_LABEL in host["Labels"], role
    for role in ("main", "port", "uid"):
        assert not seen[role]["CapAdd"], role
        assert "/tmp" in seen[role]["Tmpfs"], role
        bindings = [b for bs in seen[role]["PortBindings"].values() for b in bs]
        assert bindings, role
        assert {b["HostIp"] for b in bindings} == {"127.0.0.1"}, role
    assert seen["scan"]["CapAdd"] in (["DAC_READ_SEARCH"], ["CAP_DAC_READ_SEARCH"])
    assert seen["scan"]["NetworkMode"] == "none"
    # Four containers, started at once: every start began before any start had finished.
    assert max(b for b, _ in spans.values()) < min(e for _, e in spans.values())


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM"])
def test_interrupt_mid_run_removes_every_container(good, docker_client, monkeypatch, how):
    """Ctrl-C (SIGINT) or a SIGTERM while checks run: KeyboardInterrupt, and nothing left behind."""
    real = checks.path_traversal
    previous = signal.getsignal(signal.SIGTERM)

    def interrupt(web, expect):
        os.kill(os.getpid(), getattr(signal, how))
        time.sleep(0.2)  # let the signal land while containers are up
        return real(web, expect)

    monkeypatch.setattr(checks, "path_traversal", interrupt)
    with pytest.raises(KeyboardInterrupt):
        verify.run_site(good.catalog, good.site)
    assert _our_containers(docker_client) == []
    assert signal.getsignal(signal.SIGTERM) is previous


def test_a_crashing_check_still_removes_the_containers(good, docker_client, monkeypatch):
    def broken(*args):
        raise RuntimeError("bug in a check")

    monkeypatch.setattr(checks, "missing_path", broken)
    with pytest.raises(RuntimeError, match="bug in a check"):
        verify.run_site(good.catalog, good.site)
    assert _our_containers(docker_client) == []


def _run_cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_cli_json_exit_codes_and_recorded_state(good, variant, capsys):
    root = str(good.catalog.root)
    code, out, _ = _run_cli(capsys, "test", "web", "--root", root, "--json")
    data = json.loads(out)
    assert code == 0
    assert data["ok"] is True
    assert set(data) == {"site", "image", "image_id", "checks", "ok"}
    assert data["image"] == good.site.reference
    assert data["image_id"] == good.image_id
    assert all(set(c) == {"name", "ok", "detail"} for c in data["checks"])
    assert verify.last_result(good.image_id)["ok"] is True

    broken = variant(
        "server-tokens",
        [],
        {"/etc/nginx/nginx.conf": (good.edited("nginx.conf", "server_tokens off;", "server_tokens on;"), 0o644)},
    )
    code, out, err = _run_cli(capsys, "test", "web", "--root", root, "--image", broken)
    assert code == 1
    assert err == ""
    results = {
        cells[0]: cells[1]
        for line in out.splitlines()
        if line.startswith("│") and (cells := [c.strip() for c in line.strip("│").split("│")])[0]
    }
    assert set(results) == set(runner.ORDER)  # every check has its row
    assert {name for name, result in results.items() if result != "pass"} == {"server_header"}
    assert results["server_header"] == "FAIL"
    assert out.rstrip().endswith("1 of 16 checks failed")
    assert verify.last_result(broken)["ok"] is False

    code, _, err = _run_cli(capsys, "test", "nope", "--root", root)
    assert code == EXIT_NOT_FOUND
    assert err.startswith("error: unknown site 'nope'")
    code, _, err = _run_cli(capsys, "test", "web", "--root", root, "--image", "127.0.0.1:9/no/such:image")
    assert code == EXIT_NOT_FOUND
    assert "not found in the Docker engine" in err


def test_usage_errors_name_what_to_pass(capsys, tmp_path):
    for args, why in (
        ((), "name a site, pass --image REF, or --all"),
        (("--all", "--image", "x"), "--all tests every site's catalog image"),
        (("web", "--all"), "--all tests every site's catalog image"),
    ):
        code, out, err = _run_cli(capsys, "test", *args, "--root", str(tmp_path))
        assert code == 2
        assert err.startswith(f"error: {why}")
        assert out == ""


def test_build_with_test_records_the_result(good, capsys):
    """The contract `imgforge build SITE --test` relies on (cli/core.py calls verify.run_site)."""
    code, out, _ = _run_cli(capsys, "build", "web", "--root", str(good.catalog.root), "--test", "--json")
    row = json.loads(out)
    assert code == 0
    assert row["test"]["ok"] is True
    assert row["test"]["image_id"] == row["id"]
    assert verify.last_result(row["id"])["ok"] is True


def test_several_sites_in_one_call(good, variant, docker_client, capsys):
    """Two sites with different fallbacks, tested at once; `test --all` does the same from the CLI."""
    lines, files = good.manifest_files(site="web404", fallback="404")
    conf = good.edited("imgforge/site.conf", "try_files $uri $uri/ /index.html;", "try_files $uri $uri/ =404;")
    image = variant("web404", lines, {**files, "/etc/nginx/imgforge/site.conf": (conf, 0o644)})
    site_file = good.catalog.root / "sites" / "web404.toml"
    data = tomlkit.parse((good.catalog.root / "sites" / "web.toml").read_text())
    data["fallback"], data["image"] = "404", "127.0.0.1:5000/imgforge-verify-test/web404"
    site_file.write_text(tomlkit.dumps(data))
    docker_client.images.get(image).tag(data["image"], data["tag"])
    try:
        catalog = config.load_catalog(good.catalog.root)
        reports = verify.run_sites(catalog, [catalog.site("web"), catalog.site("web404")])
        assert [r.site for r in reports] == ["web", "web404"]
        assert all(r.ok for r in reports), [r.failed for r in reports]
        code, out, _ = _run_cli(capsys, "test", "--all", "--root", str(catalog.root), "--json")
        assert code == 0
        assert sorted(r["site"] for r in json.loads(out)) == ["web", "web404"]
    finally:
        site_file.unlink()
        docker_client.images.remove(f"{data['image']}:{data['tag']}")


def test_engine_unreachable_is_exit_5(good, capsys, monkeypatch, tmp_path):
    from imgforge.engine import docker_client

    docker_client.cache_clear()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no.sock")
    try:
        code, _, err = _run_cli(capsys, "test", "web", "--root", str(good.catalog.root))
    finally:
        docker_client.cache_clear()
    assert code == 5
    assert err.startswith("error: cannot reach the Docker engine")


def test_threads_do_not_outlive_the_run(good):
    before = {t.name for t in threading.enumerate()}
    verify.run_site(good.catalog, good.site)
    time.sleep(0.05)
    assert not {t.name for t in threading.enumerate() if t.name.startswith("imgforge-verify")} - before


def test_ctrl_c_on_the_command_exits_130_and_leaves_no_container(good, docker_client):
    """The real CLI in its own process, interrupted as a terminal would while containers run."""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "imgforge", "test", "web", "--root", str(good.catalog.root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509  (a terminal's Ctrl-C; no threads yet)
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not _our_containers(docker_client):
        time.sleep(0.02)  # interrupt once its containers are up (they inherit IMGFORGE_OWNER)
    assert _our_containers(docker_client), "the command started no container within 20 s"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1] == "interrupted"
    assert _our_containers(docker_client) == []
