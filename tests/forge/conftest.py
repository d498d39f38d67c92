"""Fixtures for the forge tests: a fake forge speaking the real REST endpoints, and real git repos.

``FakeForge`` is a threaded ``http.server`` on 127.0.0.1 that answers like GitLab
(``/api/v4/projects/:id/merge_requests``, ``PRIVATE-TOKEN``, ``X-Next-Page``, 409 on a second open
MR for a branch), GitHub (``/api/v3/repos/:owner/:repo/pulls`` as GitHub Enterprise serves it,
Bearer token, ``Link`` pages, 422 "Validation Failed" on a duplicate) and Gitea
(``/api/v1/repos/:owner/:repo/pulls``, ``Authorization: token``, ``Link`` pages, 409). Like the
real ones, it refuses a request whose source branch is not on the remote, so a test that forgets
to push fails.

Two hostile modes: ``echo`` makes every error answer repeat the request's token header (``json``:
in the message, as ``Name: value``; ``bare``: the token alone in the message; ``text``: a plain-text
body listing every request header, as debugging proxies do; ``cut``: text padded so that the
client's 64 KiB cap on error bodies cuts the token in half), and :meth:`FakeForge.redirect_elsewhere`
answers every request with a 302 to a second server on another port that records what arrives.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest

TOKEN = "glpat-s3cr3t-TOKEN-value-42"
PROJECT = "ops/gitops"
ROUTES = {
    "gitlab": re.compile(r"^/api/v4/projects/(?P<project>[^/]+)/merge_requests(?:/(?P<number>\d+))?$"),
    "github": re.compile(r"^/api/v3/repos/(?P<project>[^/]+/[^/]+)/pulls(?:/(?P<number>\d+))?$"),
    "gitea": re.compile(r"^/api/v1/repos/(?P<project>[^/]+/[^/]+)/pulls(?:/(?P<number>\d+))?$"),
}


class FakeForge:
    """State of one fake forge project; ``calls`` records (method, path, headers, json body)."""

    def __init__(self, kind: str, remote: Path | None = None):
        self.kind = kind
        self.remote = remote  # bare repo: source branches must exist there, as on a real forge
        self.items: dict[int, dict] = {}
        self.calls: list[tuple[str, str, dict, object]] = []
        self.fail: dict[str, int] = {}  # method -> status to answer once (e.g. {"POST": 500})
        self.race = False  # answer the next POST as a duplicate after creating the request "elsewhere"
        self.link_host: str | None = None  # serve next-page links on this host instead (a hostile forge)
        self.echo: str | None = None  # "json", "bare", "text" or "cut": error answers repeat the token
        self.elsewhere: Recorder | None = None  # set by redirect_elsewhere()
        self.odd: dict[str, object] = {}  # method -> a 200 answer of the wrong JSON shape, once
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> FakeForge:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self.elsewhere is not None:
            self.elsewhere.stop()

    def redirect_elsewhere(self) -> Recorder:
        """From now on, answer everything with a 302 to the same path on another loopback port."""
        self.elsewhere = Recorder()
        return self.elsewhere

    def open_items(self) -> list[dict]:
        return [i for i in self.items.values() if self._is_open(i)]

    def seed(self, branch: str, title: str = "someone else's", body: str = "", target: str = "main") -> dict:
        """An open request created "by someone", without a pushed branch check."""
        return self._new(branch, target, title, body)

    # ---- the forge's JSON shapes -------------------------------------------------------------

    def _is_open(self, item: dict) -> bool:
        return item["state"] == ("opened" if self.kind == "gitlab" else "open")

    def _new(self, branch: str, target: str, title: str, body: str) -> dict:
        n = len(self.items) + 1
        web = f"{self.url}/{PROJECT}/{'-/merge_requests' if self.kind == 'gitlab' else 'pulls'}/{n}"
        if self.kind == "gitlab":
            item = {
                "id": 1000 + n,
                "iid": n,
                "project_id": 7,
                "title": title,
                "description": body,
                "state": "opened",
                "source_branch": branch,
                "target_branch": target,
                "web_url": web,
            }
        else:
            item = {
                "id": 1000 + n,
                "number": n,
                "title": title,
                "body": body,
                "state": "open",
                "html_url": web,
                "head": {"ref": branch, "label": f"ops:{branch}"},
                "base": {"ref": target, "label": f"ops:{target}"},
            }
        self.items[n] = item
        return item

    def branch(self, item: dict) -> str:
        return item["source_branch"] if self.kind == "gitlab" else item["head"]["ref"]

    def body(self, item: dict) -> str:
        return item["description"] if self.kind == "gitlab" else item["body"]

    def authorized(self, headers) -> bool:
        expected = {
            "gitlab": ("PRIVATE-TOKEN", TOKEN),
            "github": ("Authorization", f"Bearer {TOKEN}"),
            "gitea": ("Authorization", f"token {TOKEN}"),
        }[self.kind]
        return headers.get(expected[0]) == expected[1]

    def branch_pushed(self, branch: str) -> bool:
        if self.remote is None:
            return True
        return (
            subprocess.run(
                ["git", "-C", str(self.remote), "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
                capture_output=True,
            ).returncode
            == 0
        )


class _Loopback:
    """A threaded HTTP server on a free 127.0.0.1 port; ``stop`` ends it."""

    _server: ThreadingHTTPServer

    def _serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.server_port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class Recorder(_Loopback):
    """Another host (another port on 127.0.0.1) that records every request: (method, path, headers)."""

    def __init__(self):
        self.calls: list[tuple[str, str, dict]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _record(self):
                recorder.calls.append((self.command, self.path, dict(self.headers)))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"[]")

            do_GET = do_POST = do_PUT = do_PATCH = _record

        self._serve(Handler)

    @property
    def url(self) -> str:
        return f"http://{self.host}"


def _echo(mode: str, data, headers) -> tuple[str, bytes]:
    """An error body that repeats the request's credentials the way ``mode`` says."""
    sent = {k: v for k, v in headers.items() if k.lower() in ("authorization", "private-token")}
    if mode == "text":
        return "text/plain", "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode()
    if mode == "cut":
        token = next(iter(sent.values())).split(" ", 1)[-1]
        return "text/plain", (" " * (64 * 1024 - 10) + f"{token} was refused").encode()
    if mode == "bare":
        bare = [v.split(" ", 1)[-1] for v in sent.values()]
        return "application/json", json.dumps({**data, "message": f"invalid token {' '.join(bare)}"}).encode()
    echoed = ", ".join(f"{k}: {v}" for k, v in sent.items())
    return "application/json", json.dumps(
        {**data, "message": f"{data.get('message')} (request had {echoed})", "request_headers": sent}
    ).encode()


def _handler(forge: FakeForge):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest output clean
            pass

        def _send(self, status: int, data, headers: dict | None = None) -> None:
            ctype, raw = "application/json", json.dumps(data).encode()
            if status >= 400 and forge.echo:
                ctype, raw = _echo(forge.echo, data, self.headers)
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(raw)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(raw)

        def _route(self, method: str) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            payload = json.loads(self.rfile.read(length)) if length else None
            forge.calls.append((method, self.path, dict(self.headers), payload))
            if forge.elsewhere is not None:
                self.send_response(302)
                self.send_header("Location", f"{forge.elsewhere.url}{self.path}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            match = ROUTES[forge.kind].match(parts.path)
            if not forge.authorized(self.headers):
                msg = {
                    "gitlab": {"message": "401 Unauthorized"},
                    "github": {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"},
                    "gitea": {"message": "token is required", "url": f"{forge.url}/api/swagger"},
                }[forge.kind]
                return self._send(401, msg)
            wanted = quote(PROJECT, safe="") if forge.kind == "gitlab" else PROJECT
            if not match or match["project"] != wanted:
                return self._send(404, {"message": "404 Project Not Found" if forge.kind == "gitlab" else "Not Found"})
            if method in forge.fail:
                return self._send(forge.fail.pop(method), {"message": "Internal Server Error"})
            if method in forge.odd:
                return self._send(200, forge.odd.pop(method))
            number = match["number"]
            if number is None and method == "GET":
                return self._list(parse_qs(parts.query))
            if number is None and method == "POST":
                return self._create(payload)
            item = forge.items.get(int(number or 0))
            if item is None:
                return self._send(404, {"message": "Not Found"})
            if (forge.kind == "gitlab") != (method == "PUT"):
                return self._send(405, {"message": "Method Not Allowed"})
            for key in ("title", "description", "body"):
                if key in payload:
                    item[key] = payload[key]
            if payload.get("state_event") == "close":
                item["state"] = "closed"
            if payload.get("state") == "closed":
                item["state"] = "closed"
            return self._send(200, item)

        def _list(self, query: dict) -> None:
            size_key = "limit" if forge.kind == "gitea" else "per_page"
            size = min(int(query.get(size_key, ["20"])[0]), 2)  # tiny pages: pagination is always exercised
            page = int(query.get("page", ["1"])[0])
            state = query.get("state", [""])[0]
            items = [i for i in forge.items.values() if not state or i["state"] == state]
            chunk = items[(page - 1) * size : page * size]
            headers = {"X-Total-Count" if forge.kind == "gitea" else "X-Total": str(len(items))}
            if page * size < len(items):
                nxt = f"{urlsplit(self.path).path}?state={state}&{size_key}={size}&page={page + 1}"
                if forge.kind == "gitlab":
                    headers["X-Next-Page"] = str(page + 1)  # GitLab sends both; the client may use either
                else:
                    host = forge.link_host or forge.url
                    headers["Link"] = f'<{host}{nxt}>; rel="next", <{host}{nxt}>; rel="last"'
            return self._send(200, chunk, headers)

        def _create(self, payload: dict) -> None:
            if forge.kind == "gitlab":
                branch, target = payload["source_branch"], payload["target_branch"]
                body = payload.get("description", "")
            else:
                branch, target, body = payload["head"], payload["base"], payload.get("body", "")
            if not forge.branch_pushed(branch):
                return self._send(
                    422,
                    {
                        "message": "Validation Failed",
                        "errors": [{"resource": "PullRequest", "field": "head", "code": "invalid"}],
                    },
                )
            if forge.race:
                forge.race = False
                forge._new(branch, target, "created by a concurrent run", "old body")
            dup = [i for i in forge.open_items() if forge.branch(i) == branch]
            if dup:
                n = dup[0].get("iid") or dup[0]["number"]
                if forge.kind == "gitlab":
                    return self._send(
                        409, {"message": [f"Another open merge request already exists for this source branch: !{n}"]}
                    )
                if forge.kind == "github":
                    return self._send(
                        422,
                        {
                            "message": "Validation Failed",
                            "errors": [
                                {
                                    "resource": "PullRequest",
                                    "code": "custom",
                                    "message": f"A pull request already exists for ops:{branch}.",
                                }
                            ],
                            "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request",
                        },
                    )
                return self._send(
                    409,
                    {
                        "message": f"pull request already exists for these targets [id: {n}, "
                        f"head_branch: {branch}, base_branch: {target}]",
                        "url": forge.url,
                    },
                )
            return self._send(201, forge._new(branch, target, payload["title"], body))

        def do_GET(self):
            self._route("GET")

        def do_POST(self):
            self._route("POST")

        def do_PUT(self):
            self._route("PUT")

        def do_PATCH(self):
            self._route("PATCH")

    return Handler


@pytest.fixture(params=["gitlab", "github", "gitea"])
def kind(request) -> str:
    return request.param


@pytest.fixture
def fake_forge():
    """``fake_forge(kind, remote=None)`` starts a fake forge; all are stopped after the test."""
    started: list[FakeForge] = []

    def start(kind: str, remote: Path | None = None) -> FakeForge:
        started.append(FakeForge(kind, remote).start())
        return started[-1]

    yield start
    for forge in started:
        forge.stop()


@pytest.fixture
def forge_env(monkeypatch):
    """Every token variable set to TOKEN; forge selection variables cleared."""
    for name in (
        "IMGFORGE_GITLAB_TOKEN",
        "GITLAB_TOKEN",
        "IMGFORGE_GITHUB_TOKEN",
        "GITHUB_TOKEN",
        "IMGFORGE_GITEA_TOKEN",
        "GITEA_TOKEN",
        "IMGFORGE_FORGE",
        "IMGFORGE_FORGE_URL",
        "IMGFORGE_FORGE_PROJECT",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GITLAB_TOKEN", TOKEN)
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("GITEA_TOKEN", TOKEN)
    return TOKEN


# ---- real git repos: a GitOps work tree cloned from a bare remote on disk --------------------------


def git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True)
    assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
    return proc.stdout.strip()


def gitops_files(image: str, tag: str) -> dict[str, str]:
    """One site app shaped like the real repo (gitops-shape.md): base + overlay patches."""
    base, overlay = "fluxcd/apps/base/web-site", "fluxcd/apps/overlays/production/web-site"
    return {
        f"{base}/kustomization.yaml": "resources:\n  - deployment.yaml\n  - service.yaml\n",
        f"{base}/deployment.yaml": """\
            apiVersion: apps/v1
            kind: Deployment
            metadata:
              name: web-site
            spec:
              selector:
                matchLabels:
                  app: web-site
              template:
                metadata:
                  labels:
                    app: web-site
                spec:
                  containers:
                    - name: web-site
                      image: PLACEHOLDER_IMAGE
                      ports:
                        - containerPort: 80
                          name: http
                      resources:
                        limits:
                          memory: 64Mi
            """,
        f"{base}/service.yaml": """\
            apiVersion: v1
            kind: Service
            metadata:
              name: web-site
            spec:
              selector:
                app: web-site
              ports:
                - port: 80
                  targetPort: http
            """,
        f"{overlay}/kustomization.yaml": """\
            apiVersion: kustomize.config.k8s.io/v1beta1
            kind: Kustomization
            namespace: lost-woods
            resources:
              - ../../../base/web-site
            patches:
              - path: deployment-patch.yaml
                target:
                  kind: Deployment
                  name: web-site
              - path: service-patch.yaml
                target:
                  kind: Service
                  name: web-site
            """,
        f"{overlay}/deployment-patch.yaml": f"""\
            apiVersion: apps/v1
            kind: Deployment
            metadata:
              name: web-site
            spec:
              template:
                spec:
                  containers:
                    - name: web-site
                      image: {image}:{tag}  # pinned by hand
            """,
        f"{overlay}/service-patch.yaml": "- op: replace\n  path: /spec/ports/0/port\n  value: 4015\n",
        "fluxcd/apps/overlays/production/kustomization.yaml": "resources:\n  - web-site\n",
        "secrets/db.enc.yaml": "data: ENC[AES256_GCM,data:abc,type:str]\n",
    }


@pytest.fixture
def gitops_repo(tmp_path, build_file_tree, monkeypatch):
    """``gitops_repo(image, tag)`` -> (work clone, bare remote), both real git repos on disk."""
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{who}_NAME", "Dev Eloper")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "dev@example.com")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "gitconfig"))  # the user's config stays out
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")

    def make(image: str, tag: str = "v0.0.2") -> tuple[Path, Path]:
        seed = build_file_tree(tmp_path / "seed", gitops_files(image, tag))
        git(seed, "init", "-q", "-b", "main")
        git(seed, "add", "-A")
        git(seed, "commit", "-q", "-m", "initial")
        bare = tmp_path / "remote.git"
        subprocess.run(["git", "clone", "-q", "--bare", str(seed), str(bare)], check=True)
        work = tmp_path / "work"
        subprocess.run(["git", "clone", "-q", str(bare), str(work)], check=True)
        return work, bare

    return make


def snapshot(work: Path, bare: Path) -> dict:
    """Everything imgforge must leave alone on failure: HEAD, index, work tree, local and remote refs."""
    return {
        "head": git(work, "symbolic-ref", "-q", "HEAD"),
        "sha": git(work, "rev-parse", "HEAD"),
        "status": git(work, "status", "--porcelain", "--untracked-files=all"),
        "diff": git(work, "diff", "HEAD"),
        "local": git(work, "for-each-ref", "refs/heads"),
        "remote": git(bare, "for-each-ref"),
    }


@pytest.fixture
def snap():
    return snapshot


@pytest.fixture
def git_in():
    return git


# ---- a fake registry: tags and manifest digests, the two calls `update` and the evidence make ----


class FakeRegistry(_Loopback):
    def __init__(self):
        self.tags: dict[str, list[str]] = {}
        self.digests: dict[tuple[str, str], str] = {}
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, status: int, data: dict | None = None, headers: dict | None = None) -> None:
                raw = json.dumps(data or {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(raw)

            def do_GET(self):
                path = urlsplit(self.path).path
                if path == "/v2/":
                    return self._answer(200)
                m = re.match(r"^/v2/(.+)/tags/list$", path)
                if m and m[1] in registry.tags:
                    return self._answer(200, {"name": m[1], "tags": registry.tags[m[1]]})
                m = re.match(r"^/v2/(.+)/manifests/([^/]+)$", path)
                if m and (m[1], m[2]) in registry.digests:
                    return self._answer(200, {}, {"Docker-Content-Digest": registry.digests[(m[1], m[2])]})
                return self._answer(404, {"errors": [{"code": "NAME_UNKNOWN", "message": "repository name not known"}]})

            do_HEAD = do_GET

        self._serve(Handler)


@pytest.fixture
def fake_registry(monkeypatch):
    for name in ("IMGFORGE_REGISTRY_USER", "IMGFORGE_REGISTRY_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", "/nonexistent-imgforge-test")  # no credentials from the user's login
    registry = FakeRegistry()
    yield registry
    registry.stop()
