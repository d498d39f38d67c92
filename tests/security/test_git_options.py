"""git never reads a user value as an option, never waits for a person, never runs a transport command.

git takes anything that starts with ``-`` as an option wherever it stands, and ``--upload-pack=CMD``
runs CMD. Each test plants a marker command and proves it never ran; the remotes are on disk, the
servers on loopback.
"""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib: the helpers by name
from catalog_attack_helpers import assert_one_error_line, cli, edit_toml, golden_catalog

from imgforge import _git, config, content
from imgforge.errors import ContentMissing, GitFailed, GitopsError, GitTimeout, UnsafeGitInput
from imgforge.gitops import branch

SITE = "prebuilt-spa"


def _sh(*args: str, cwd: Path | None = None) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    return subprocess.run(args, cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def origin(tmp_path) -> Path:
    """A site repository on disk with a www-data folder."""
    repo = tmp_path / "origin"
    (repo / "www-data").mkdir(parents=True)
    (repo / "www-data" / "index.html").write_text("<h1>hi</h1>\n")
    _sh("git", "init", "-q", "-b", "main", str(repo))
    _sh("git", "add", "-A", cwd=repo)
    _sh("git", "commit", "-q", "-m", "site", cwd=repo)
    return repo


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "PWNED"


def _git_site(tmp_path: Path, url: str, ref: str = "main") -> Path:
    root = golden_catalog(tmp_path / "catalog")
    edit_toml(root / "sites" / f"{SITE}.toml", "source.path", None)
    edit_toml(root / "sites" / f"{SITE}.toml", "source.git", url)
    edit_toml(root / "sites" / f"{SITE}.toml", "source.ref", ref)
    return root


@pytest.mark.parametrize("command", [["render", SITE], ["matrix"], ["sites", "--json"]])
def test_a_catalog_ref_that_is_an_option_runs_nothing(tmp_path, origin, marker, command):
    root = _git_site(tmp_path, f"file://{origin}", ref=f"--upload-pack=touch {marker}")
    code, out, err = cli(*command, "--root", str(root))
    assert_one_error_line(code, out, err)
    assert err.startswith(f"error: sites/{SITE}.toml: source.ref: expected a branch, tag or full 40-hex commit")
    assert not marker.exists()


@pytest.mark.parametrize(
    "url",
    [
        "--upload-pack=touch {marker}",
        "ext::sh -c touch% {marker}",
        "-oProxyCommand=touch {marker}",
        "git@-oProxyCommand=touch:x",
    ],
)
def test_a_catalog_url_that_is_an_option_or_a_command_runs_nothing(tmp_path, marker, url):
    root = _git_site(tmp_path, url.format(marker=marker))
    code, out, err = cli("matrix", "--root", str(root))
    assert_one_error_line(code, out, err)
    assert f"sites/{SITE}.toml: source.git: expected an https://, ssh:// or git@host:path URL" in err
    assert not marker.exists()


def test_the_runner_checks_refs_and_urls_itself(tmp_path, origin, marker):
    """Callers that skip the catalog still cannot hand git an option as a ref or a URL."""
    mirror = tmp_path / "mirror.git"
    _git.run("init", "--bare", "-q", operands=[str(mirror)])
    with pytest.raises(UnsafeGitInput, match="refused ref"):
        _git.run("fetch", "-q", cwd=mirror, operands=[_git.Url(str(origin)), _git.Ref(f"--upload-pack=touch {marker}")])
    with pytest.raises(UnsafeGitInput, match="refused URL"):
        _git.run("ls-remote", operands=[_git.Url(f"ext::sh -c touch% {marker}")])
    with pytest.raises(UnsafeGitInput, match="line break"):
        _git.run("ls-remote", operands=[str(origin), "main\n--upload-pack=x"])
    assert not marker.exists()


def test_operands_come_after_end_of_options(origin, marker):
    """A remote name from the command line (``imgforge pr --remote``) is a name, never an option."""
    with pytest.raises(GitFailed):
        _git.run("ls-remote", operands=[f"--upload-pack=touch {marker}", str(origin)])
    with pytest.raises(GitopsError):
        branch.default_branch(branch.Git(origin), f"--upload-pack=touch {marker}")
    assert not marker.exists()


def test_command_transports_are_off_even_when_the_repo_allows_them(origin, marker):
    """A clone whose config allows ``ext::`` (a remote that is a shell command) still runs nothing."""
    _sh("git", "config", "protocol.ext.allow", "always", cwd=origin)
    _sh("git", "remote", "add", "origin", f"ext::sh -c touch% {marker}", cwd=origin)
    with pytest.raises(GitopsError):
        branch.remote_branch(branch.Git(origin), "origin", "main")
    assert not marker.exists()


@pytest.fixture
def isolated_git_config(tmp_path, monkeypatch):
    """No credential helper or other setting of the machine's own git configuration."""
    empty = tmp_path / "gitconfig"
    empty.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(empty))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


class _AskForPassword(http.server.BaseHTTPRequestHandler):
    """A git server over loopback that wants a password for everything."""

    def do_GET(self) -> None:
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="git"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_git_never_asks_for_a_password(tmp_path, marker, monkeypatch, isolated_git_config):
    """A desktop askpass helper in the environment must not pop up (or hang CI): git fails instead."""
    askpass = tmp_path / "askpass"
    askpass.write_text(f"#!/bin/sh\ntouch {marker}\necho secret\n")
    askpass.chmod(0o755)
    monkeypatch.setenv("GIT_ASKPASS", str(askpass))
    monkeypatch.setenv("SSH_ASKPASS", str(askpass))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AskForPassword)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(GitFailed):
            _git.run("ls-remote", operands=[f"http://127.0.0.1:{server.server_port}/site.git"], timeout=30)
    finally:
        server.shutdown()
        server.server_close()
    assert not marker.exists()


def test_ssh_runs_in_batch_mode(tmp_path, monkeypatch, isolated_git_config):
    """ssh must fail rather than ask for a passphrase or a host key (a fake ssh records its argv)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    seen = tmp_path / "ssh-args"
    (bin_dir / "ssh").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {seen}\nexit 255\n')
    (bin_dir / "ssh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.delenv("GIT_SSH_COMMAND", raising=False)
    monkeypatch.delenv("GIT_SSH", raising=False)
    with pytest.raises(GitFailed):
        _git.run("ls-remote", operands=[_git.Url("ssh://git@127.0.0.1:1/site.git")])
    assert "-oBatchMode=yes" in seen.read_text().split()


def test_a_remote_that_never_answers_times_out(tmp_path):
    """A server that accepts and then says nothing ends in GitTimeout, not a hung process."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        with pytest.raises(GitTimeout, match="no answer within 2 s"):
            _git.run("ls-remote", operands=[f"http://127.0.0.1:{listener.getsockname()[1]}/site.git"], timeout=2)
    finally:
        listener.close()


def test_a_failing_git_archive_leaves_no_staging_folder(tmp_path, origin):
    """The export of a fetched commit fails (a blob of the cached mirror is corrupt, as after a
    disk fault): one ContentMissing naming the site, and no ``.staging-*`` folder left in the cache."""
    root = _git_site(tmp_path, f"file://{origin}")
    catalog = config.load_catalog(root)
    site = catalog.site(SITE)
    fetched = content.resolve(catalog, site)
    export = fetched.path.parent  # <cache>/sources/<hash>/<commit>
    mirror = export.parent.with_suffix(".git")
    blob = _sh("git", "rev-parse", "HEAD:www-data/index.html", cwd=origin)
    (mirror / "objects" / blob[:2] / blob[2:]).write_bytes(b"not zlib")
    subprocess.run(["rm", "-rf", str(export)], check=True)
    with pytest.raises(ContentMissing, match=rf"^sites/{SITE}.toml: source: cannot export [0-9a-f]{{12}} of file://"):
        content.resolve(catalog, site)
    assert [p.name for p in export.parent.iterdir() if ".staging-" in p.name] == []
    code, out, err = cli("render", SITE, "--root", str(root), "--out", str(tmp_path / "out"))
    assert_one_error_line(code, out, err, exit_code=4)
