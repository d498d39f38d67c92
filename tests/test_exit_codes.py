"""The README's exit-code table, held to its word: each documented code from a real command.

The expected numbers are read from the README's table, never from ``imgforge.errors``: renumbering
a code (or the table) without the other fails here. Every command runs as its own process
(``python -m imgforge``), so the code is the one a shell or CI job sees. Each row of the table must
have a scenario below, and each scenario a row.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEAD = "127.0.0.1:9"  # port 9 (discard): nothing listens, every connection is refused at once


def readme_exit_codes() -> dict[int, str]:
    """``{code: meaning}`` from the table under "## Exit codes" in README.md."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Exit codes\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| *(\d+) *\| *(.+?) *\|$", section, re.M)
    assert rows, "README.md: no rows found in the exit-code table"
    return {int(code): meaning for code, meaning in rows}


def code_for(meaning_start: str) -> int:
    """The README's code for the row whose meaning starts with these words."""
    found = [code for code, meaning in readme_exit_codes().items() if meaning.startswith(meaning_start)]
    assert len(found) == 1, f"README exit-code table: no single row starting {meaning_start!r}"
    return found[0]


def imgforge(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "imgforge", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        check=False,
    )


@pytest.fixture
def catalog(make_catalog, tmp_path) -> Path:
    """One site on a registry that refuses connections, and one whose base image has no nginx."""
    token = uuid.uuid4().hex[:8]
    return make_catalog(
        sites={
            "web": {"image": f"{DEAD}/exit-codes/web{token}", "tag": "v0.0.3", "gitops": {"app": "web-site"}},
            "nonginx": {"image": f"{DEAD}/exit-codes/nonginx{token}", "base_image": "imgforge/debian:bookworm"},
        }
    )


def _gitops_repo(tmp_path: Path, image: str) -> Path:
    """A GitOps repo deploying ``image`` at v0.0.2 (the catalog says v0.0.3: there is a change)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gitops_repo_gen_exit", REPO / "tests/gitops/gitops_repo_gen.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    repo = tmp_path / "gitops"
    gen.write_app(repo, "web-site", "patch", tag="v0.0.2")
    gen.write_common(repo, ["web-site"])
    patch = repo / "fluxcd/apps/overlays/production/web-site/deployment-patch.yaml"
    patch.write_text(patch.read_text().replace(gen.image_of("web-site"), image))
    gen.git_commit(repo)
    return repo


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    assert proc.stderr.rstrip().endswith(lines[0]), proc.stderr
    return lines[0]


def test_every_code_of_the_table_has_a_scenario_here():
    covered = [code_for(meaning) for meaning in [*SCENARIOS, *DOCKER_SCENARIOS, "interrupted"]]
    assert sorted(covered) == sorted(readme_exit_codes())


@pytest.mark.parametrize(
    "meaning",
    [
        "success",
        "a check failed",
        "bad command-line usage",
        "the catalog is invalid",
        "not found",
        "registry error",
        "GitOps repo error",
        "forge",
    ],
)
def test_documented_code_without_docker(meaning, catalog, tmp_path, build_file_tree):
    proc = SCENARIOS[meaning](catalog, tmp_path, build_file_tree)
    assert proc.returncode == code_for(meaning), proc.stderr
    if proc.returncode >= 3:
        _one_error_line(proc)


@pytest.mark.docker
@pytest.mark.parametrize("meaning", ["Docker engine unreachable", "`docker build` failed", "refused by a safety rule"])
def test_documented_code_with_docker(meaning, catalog, tmp_path, docker_client, nginx_base, debian_base):
    proc = DOCKER_SCENARIOS[meaning](catalog, tmp_path, docker_client)
    assert proc.returncode == code_for(meaning), proc.stderr
    _one_error_line(proc)


def test_ctrl_c_is_the_interrupted_code(catalog):
    """SIGINT while the command waits on a registry that accepted the connection and never answers.

    (tests/verify/test_runner.py interrupts `imgforge test` the same way while containers run.)
    """
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    accepted = threading.Event()
    held: list[socket.socket] = []

    def hold() -> None:
        conn, _ = silent.accept()
        held.append(conn)
        accepted.set()

    threading.Thread(target=hold, daemon=True).start()
    site = catalog / "sites" / "web.toml"
    site.write_text(
        re.sub(r'image = "[^"]+"', f'image = "127.0.0.1:{silent.getsockname()[1]}/exit-codes/web"', site.read_text())
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgforge", "tags", "web", "--root", str(catalog)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A background job inherits SIGINT ignored; Python then installs no handler. Reset before exec.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509 (runs before exec)
    )
    try:
        assert accepted.wait(30), "imgforge never connected to the registry"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill() if proc.poll() is None else None
        for conn in held:
            conn.close()
        silent.close()
    assert proc.returncode == code_for("interrupted")
    assert err.strip().splitlines()[-1] == "interrupted"


# ---- one real command per documented code: the finished process ----


def _success(catalog, tmp_path, build_file_tree):
    return imgforge("sites", "--root", str(catalog))


def _check_failed(catalog, tmp_path, build_file_tree):
    repo = build_file_tree(
        tmp_path / "old-site",
        {"Dockerfile": "FROM nginx:1.27\nCOPY www /usr/share/nginx/html\n", "www/index.html": "<h1>hi</h1>\n"},
    )
    return imgforge("audit", str(repo))  # no USER: the container runs as root (an error-level finding)


def _usage(catalog, tmp_path, build_file_tree):
    return imgforge("sites", "--root", str(catalog), "--no-such-flag")


def _catalog_invalid(catalog, tmp_path, build_file_tree):
    site = catalog / "sites" / "web.toml"
    site.write_text(site.read_text().replace('tag = "v0.0.3"', 'tag = "v0.0.3"\nuid = "nginx"'))
    return imgforge("sites", "--root", str(catalog))


def _not_found(catalog, tmp_path, build_file_tree):
    return imgforge("render", "nope", "--root", str(catalog), "--out", str(tmp_path / "out"))


def _registry_error(catalog, tmp_path, build_file_tree):
    return imgforge("tags", "web", "--root", str(catalog))


def _gitops_error(catalog, tmp_path, build_file_tree):
    repo = build_file_tree(
        tmp_path / "gitops", {"fluxcd/apps/overlays/production/web-site/kustomization.yaml": "resources: [\n"}
    )
    return imgforge("gitops", "plan", "web", "--repo", str(repo), "--root", str(catalog))


def _forge_error(catalog, tmp_path, build_file_tree):
    repo = _gitops_repo(tmp_path, _site_image(catalog))
    return imgforge(
        "pr",
        "web",
        "--repo",
        str(repo),
        "--root",
        str(catalog),
        "--forge",
        "gitlab",
        "--forge-url",
        f"http://{DEAD}",
        "--project",
        "ops/gitops",
        env={"GITLAB_TOKEN": "glpat-exit-codes"},
    )


def _site_image(catalog: Path) -> str:
    return re.search(r'image = "([^"]+)"', (catalog / "sites" / "web.toml").read_text())[1]


def _engine_unreachable(catalog, tmp_path, client):
    return imgforge("build", "web", "--root", str(catalog), env={"DOCKER_HOST": f"unix://{tmp_path}/dead.sock"})


def _build_failed(catalog, tmp_path, client):
    return imgforge("build", "nonginx", "--root", str(catalog))  # `nginx -t` finds no nginx in the base


def _refused(catalog, tmp_path, client):
    """An image that was never put through `imgforge test` is not pushed."""
    repository = _site_image(catalog)
    client.images.get("imgforge/nginx-debian:bookworm").tag(repository, "v0.0.3")
    try:
        return imgforge("push", "web", "--root", str(catalog))
    finally:
        client.images.remove(f"{repository}:v0.0.3")  # the tag this test made, nothing else


SCENARIOS = {
    "success": _success,
    "a check failed": _check_failed,
    "bad command-line usage": _usage,
    "the catalog is invalid": _catalog_invalid,
    "not found": _not_found,
    "registry error": _registry_error,
    "GitOps repo error": _gitops_error,
    "forge": _forge_error,
}
DOCKER_SCENARIOS = {
    "Docker engine unreachable": _engine_unreachable,
    "`docker build` failed": _build_failed,
    "refused by a safety rule": _refused,
}
