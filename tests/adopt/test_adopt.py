"""``imgforge adopt``: root site images as they exist in the wild (stock Debian nginx config with its
``user`` directive, listen 80, content under /var/www/html or /usr/share/nginx/html, a dotfile and a
PHP file among it), pushed to the test registry and named by a GitOps fixture rendered with
kustomize. Adopted entries are then built and tested, and every file the hardened image serves is
compared byte for byte with the root image's own file."""

from __future__ import annotations

import io
import json
import os
import tarfile
import textwrap
import time
import tomllib
from pathlib import Path

import pytest
import requests

from imgforge import config
from tests.adopt.conftest import RootImage
from tests.audit.audit_fixture_repos import LSIO_CONTAINER, OVERLAYS, fleet_app
from tests.conftest import remove_test_image

pytestmark = [pytest.mark.docker, pytest.mark.registry, pytest.mark.kustomize, pytest.mark.slow]

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000") + bytes(range(256))
# The stock Debian config: nginx.conf with `user www-data;`, sites-enabled/default with
# `listen 80`, `root /var/www/html` and `try_files $uri $uri/ =404`. Only the content is added.
DEBIAN_DEFAULT = RootImage(
    "debian-default",
    """
    FROM {base}
    COPY html/ /var/www/html/
    EXPOSE 80
    CMD ["nginx", "-g", "daemon off;"]
    """,
    {
        "html/index.html": "<!doctype html><title>Debian default</title><a href=about/>about</a>\n",
        "html/about/index.html": "<h1>about</h1>\n",
        "html/style.css": "body { color: #123 }\n",
        "html/img/logo.png": PNG,
        "html/.htaccess": "Require all denied\n",
        "html/contact.php": "<?php $pw = 'smtp-secret'; mail($_POST['to'], 'x', 'y');\n",
    },
)
# A site config of its own under conf.d (the stock nginx.conf includes it), content where the
# official nginx image keeps it, an SPA fallback, headers, and a header with a variable.
USR_SHARE = RootImage(
    "usr-share",
    """
    FROM {base}
    RUN rm /etc/nginx/sites-enabled/default
    COPY site.conf /etc/nginx/conf.d/site.conf
    COPY html/ /usr/share/nginx/html/
    EXPOSE 80
    CMD ["nginx", "-g", "daemon off;"]
    """,
    {
        "site.conf": """
            server {
                listen 80;
                server_name _;
                root /usr/share/nginx/html;
                index index.html;
                add_header Content-Security-Policy "default-src 'self'";
                add_header X-Frame-Options "DENY";
                add_header X-Request-Id $request_id;
                location ~* \\.(css|js|png)$ {
                    expires 1y;
                }
                location / {
                    try_files $uri $uri/ /index.html;
                }
            }
        """,
        "html/index.html": "<!doctype html><div id=app></div><script src=/app.js></script>\n",
        "html/app.js": "document.getElementById('app').textContent = 'spa';\n",
        "html/.env": "SMTP_PASSWORD=hunter2\n",
        "html/api/mail.php": "<?php define('SMTP_PASSWORD', 'hunter2-prod');\n",
        "html/assets/data.json": '{"ok": true}\n',
    },
)
CRONJOB = """
    apiVersion: batch/v1
    kind: CronJob
    metadata:
      name: cron
    spec:
      schedule: "0 3 * * *"
      jobTemplate:
        spec:
          template:
            spec:
              restartPolicy: Never
              containers:
                - name: cron
                  image: 127.0.0.1:9/w15/never-read:v1
"""
NON_ROOT = RootImage(
    "non-root",
    """
    FROM {base}
    COPY html/ /var/www/html/
    USER 100:101
    """,
    {"html/index.html": "<p>already non-root</p>\n"},
)


@pytest.fixture(scope="module")
def fleet(root_images, basic_registry, tmp_path_factory):
    """The GitOps repo: the two root sites, a non-root one, one whose image is gone, a LinuxServer.io app."""
    default = root_images(DEBIAN_DEFAULT, tag="v1.4.7")
    usr_share = root_images(USR_SHARE, tag="2.0.9")
    non_root = root_images(NON_ROOT)
    repo = tmp_path_factory.mktemp("gitops")
    files = {
        **fleet_app("debian-default-site", default.reference),
        **fleet_app("usr-share-site", usr_share.reference),
        **fleet_app("non-root-site", non_root.reference),
        **fleet_app("gone-site", f"{basic_registry.host}/w15/gone:v1.0.0"),
        **fleet_app("sonarr", "lscr.io/linuxserver/sonarr:4.0.14", container_extra=LSIO_CONTAINER),
        **fleet_app("broken-site", f"{basic_registry.host}/w15/broken:v1.0.0", base="does-not-exist"),
        f"{OVERLAYS}/cron/kustomization.yaml": "resources:\n  - cronjob.yaml\n",
        f"{OVERLAYS}/cron/cronjob.yaml": CRONJOB,
    }
    for rel, text in files.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(textwrap.dedent(text).lstrip("\n"))
    assert (repo / OVERLAYS).is_dir()
    return repo, {"debian-default": default, "usr-share": usr_share}


@pytest.fixture
def catalog_root(tmp_path, nginx_base) -> Path:
    """An empty catalog whose default profile builds here (the local nginx base)."""
    root = tmp_path / "catalog"
    (root / "sites").mkdir(parents=True)
    (root / "imgforge.toml").write_text(f'[defaults]\nprofile = "prebuilt"\nbase_image = "{nginx_base}"\n')
    return root


def _adopt(cli_main, repo: Path, root: Path, *extra: str) -> tuple[int, str, str]:
    return cli_main("adopt", "--repo", str(repo), "--root", str(root), *extra)


def test_adopt_writes_one_entry_per_root_site(fleet, catalog_root, registry_env, basic_registry, cli_main):
    registry_env(basic_registry)
    repo, pushed = fleet
    code, out, err = _adopt(cli_main, repo, catalog_root, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["written"] is True
    assert sorted(a["site"] for a in data["adopted"]) == ["debian-default", "usr-share"]
    reasons = {n["app"]: n["reason"] for n in data["not_adopted"]}
    assert reasons["non-root-site"] == "the image already runs as USER 100:101"
    assert reasons["gone-site"].startswith("image not read:")
    assert reasons["sonarr"].startswith("a LinuxServer.io image")
    assert reasons["cron"] == "a CronJob: adopt takes the sites Deployments serve"
    assert reasons["broken-site"].startswith("did not render: ")
    assert "does-not-exist" in reasons["broken-site"]
    assert basic_registry.password not in out

    default = tomllib.loads((catalog_root / "sites" / "debian-default.toml").read_text())
    image = pushed["debian-default"].reference.rsplit(":", 1)[0]
    assert default == {
        "image": image,
        "tag": "v1.4.8",
        "description": "debian-default static site",
        "fallback": "404",
        "ipv6": "auto",
        "gzip": True,
        "cache_assets": False,
        "source": {"image": pushed["debian-default"].pinned, "content_dir": "/var/www/html"},
        "gitops": {"app": "debian-default-site", "namespace": "lost-woods"},
    }
    spa = tomllib.loads((catalog_root / "sites" / "usr-share.toml").read_text())
    assert (spa["tag"], spa["fallback"], spa["ipv6"], spa["cache_assets"]) == ("2.0.10", "spa", "off", True)
    assert spa["source"] == {"image": pushed["usr-share"].pinned, "content_dir": "/usr/share/nginx/html"}
    # Carried over as written; the header with an nginx variable cannot be (values are literal).
    assert spa["headers"] == {"Content-Security-Policy": "default-src 'self'", "X-Frame-Options": "DENY"}
    catalog = config.load_catalog(catalog_root)
    assert {s.name: (s.uid, s.gid, s.port) for s in catalog.sites.values()} == {
        "debian-default": (100, 101, 8080),
        "usr-share": (100, 101, 8080),
    }

    # A second run finds both in the catalog and overwrites nothing.
    before = {p.name: p.read_bytes() for p in (catalog_root / "sites").iterdir()}
    code, out, err = _adopt(cli_main, repo, catalog_root, "--json")
    assert code == 0, err
    again = json.loads(out)
    assert (again["adopted"], again["written"]) == ([], False)
    assert {n["app"]: n["reason"] for n in again["not_adopted"]}["usr-share-site"] == (
        "already in the catalog as sites/usr-share.toml"
    )
    assert {p.name: p.read_bytes() for p in (catalog_root / "sites").iterdir()} == before


def test_an_entry_without_a_source_gets_the_running_image_and_keeps_the_rest(
    fleet, catalog_root, registry_env, basic_registry, cli_main
):
    """The fleet's own catalog: entries with image, tag and app but no content source ("not
    configured"). adopt fills in their [source] from the running image and changes no other line."""
    registry_env(basic_registry)
    repo, pushed = fleet
    image = pushed["usr-share"].reference.rsplit(":", 1)[0]
    waiting = textwrap.dedent(f"""\
        # usr-share — its repository's URL is not known yet.
        image = "{image}"
        tag = "2.0.9"
        fallback = "404"   # chosen by hand: stays

        [source]
        # git = "https://<gitlab host>/<group>/usr-share.git"
        content_dir = "www-data"

        [gitops]
        namespace = "lost-woods"
        app = "usr-share-site"    # Service port 4020
    """)
    (catalog_root / "sites" / "usr-share.toml").write_text(waiting)
    # A site with a source is left alone, and so is one whose catalog image is not what runs.
    (catalog_root / "sites" / "debian.toml").write_text(
        f'image = "{basic_registry.host}/w15/other"\ntag = "v1.0.0"\n[gitops]\napp = "debian-default-site"\n'
    )
    code, out, err = _adopt(cli_main, repo, catalog_root, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert [(a["site"], a["completes"]) for a in data["adopted"]] == [("usr-share", True)]
    reasons = {n["app"]: n["reason"] for n in data["not_adopted"]}
    assert reasons["debian-default-site"] == (
        f"sites/debian.toml names image {basic_registry.host}/w15/other, but the app runs "
        f"{pushed['debian-default'].reference.rsplit(':', 1)[0]}"
    )
    text = (catalog_root / "sites" / "usr-share.toml").read_text()
    assert text == waiting.replace(
        'content_dir = "www-data"',
        'content_dir = "/usr/share/nginx/html" # the nginx root directive; in the site repo: www-data\n'
        f'image = "{pushed["usr-share"].pinned}" # adopted: running as {pushed["usr-share"].reference}',
    ), text
    site = config.load_catalog(catalog_root).site("usr-share")
    assert site.source is not None
    assert (site.source.image, site.source.content_dir) == (pushed["usr-share"].pinned, "/usr/share/nginx/html")
    assert (site.tag, site.fallback, site.headers) == ("2.0.9", "404", {})
    code, out, _ = _adopt(cli_main, repo, catalog_root, "--json")  # now it has a source: left alone
    assert {n["app"]: n["reason"] for n in json.loads(out)["not_adopted"]}["usr-share-site"] == (
        "already in the catalog as sites/usr-share.toml"
    )


def test_dry_run_and_match_write_nothing(fleet, catalog_root, registry_env, basic_registry, cli_main):
    registry_env(basic_registry)
    repo, pushed = fleet
    code, out, err = _adopt(cli_main, repo, catalog_root, "--dry-run", "--match", "^usr-")
    assert code == 0, err
    assert out.startswith("would write sites/usr-share.toml: app usr-share-site, ")
    assert f'image = "{pushed["usr-share"].pinned}"' in out
    assert "debian-default" not in out
    assert list((catalog_root / "sites").iterdir()) == []
    code, out, err = _adopt(cli_main, repo, catalog_root, "--match", "^usr-")
    assert code == 0, err
    assert out.startswith("wrote sites/usr-share.toml: app usr-share-site, ")
    assert [p.name for p in (catalog_root / "sites").iterdir()] == ["usr-share.toml"]


def test_an_entry_the_catalog_would_refuse_is_listed_not_written(
    fleet, catalog_root, registry_env, basic_registry, cli_main
):
    """Each entry is checked against the catalog's patterns and defaults before anything is
    written: a default that contradicts an image source (a default source path) rules both out."""
    registry_env(basic_registry)
    repo, _ = fleet
    settings = catalog_root / "imgforge.toml"
    settings.write_text(settings.read_text() + '[defaults.source]\npath = "content"\n')
    code, out, err = _adopt(cli_main, repo, catalog_root, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert (data["adopted"], data["written"]) == ([], False)
    reasons = {n["app"]: n["reason"] for n in data["not_adopted"]}
    assert reasons["usr-share-site"] == (
        "the entry would not be valid: sites/usr-share.toml: source: set one of path, git or image, not several"
    )
    assert list((catalog_root / "sites").iterdir()) == []


def test_a_file_that_appears_meanwhile_is_never_overwritten(catalog_root, tmp_path):
    """Files are linked into place, never renamed over: a file that took the name after the check
    stays as it was, and the run's other files are removed."""
    from imgforge.adopt import Adopted, _write_all
    from imgforge.errors import Refused

    def entry(name: str) -> Adopted:
        text = f'image = "127.0.0.1:5000/w15/{name}"\ntag = "v0.0.1"\n'
        return Adopted(name, f"sites/{name}.toml", f"{name}-site", None, name, "x", "sha256:0", "/", text)

    (catalog_root / "sites" / "second.toml").write_text("# someone else's\n")
    with pytest.raises(Refused, match=r"second\.toml appeared or changed while adopt ran; not overwriting it"):
        _write_all(catalog_root, [entry("first"), entry("second")])
    assert sorted(p.name for p in (catalog_root / "sites").iterdir()) == ["second.toml"]
    assert (catalog_root / "sites" / "second.toml").read_text() == "# someone else's\n"
    assert [p.name for p in (catalog_root / "sites").iterdir() if p.name.startswith(".")] == []


def test_a_bad_match_is_a_usage_error(fleet, catalog_root, cli_main):
    repo, _ = fleet
    code, out, err = _adopt(cli_main, repo, catalog_root, "--match", "(")
    assert (code, out) == (2, "")
    assert err.startswith("error: --match '(': not a regular expression")


# --- end to end: build and test every adopted site, then compare what it serves --------------------


def test_adopted_sites_build_test_and_serve_the_root_images_bytes(
    fleet, catalog_root, registry_env, basic_registry, cli_main, docker_client
):
    registry_env(basic_registry)
    repo, pushed = fleet
    code, _, err = _adopt(cli_main, repo, catalog_root)
    assert code == 0, err
    catalog = config.load_catalog(catalog_root)
    built: list[tuple[str, str]] = []
    try:
        code, out, err = cli_main("build", "--all", "--test", "--root", str(catalog_root), "--json")
        for site in catalog.sites.values():
            built.append((docker_client.images.get(site.reference).id, site.image))
        assert code == 0, (out, err)
        for site in catalog.sites.values():
            root_image = pushed[site.name]
            assert site.source is not None
            files = _root_image_files(docker_client, root_image.image_id, site.source.content_dir)
            assert files, site.name
            _compare_served(docker_client, site.reference, site.port, files)
        # The rest of the README's flow: the tested image is pushed under the adopted tag, and
        # the GitOps change that deploys it (tag, non-root securityContext, port) is proven.
        for site in catalog.sites.values():
            code, out, err = cli_main("push", site.name, "--root", str(catalog_root))
            assert code == 0, (out, err)
            code, out, err = cli_main(
                "gitops", "plan", site.name, "--repo", str(repo), "--root", str(catalog_root), "--json"
            )
            assert code == 0, (out, err)
            plan = json.loads(out)
            assert (plan["old_tag"], plan["new_tag"]) == (pushed[site.name].reference.rsplit(":", 1)[1], site.tag)
            assert plan["port_change"] == "80 → 8080"
            assert "pod runAsNonRoot: true" in plan["security_changes"]
    finally:
        for image_id, repository in built:
            remove_test_image(docker_client, image_id, repository)


def _root_image_files(client, image_id: str, folder: str) -> dict[str, bytes]:
    """Every regular file under ``folder`` of the root image, read by the engine itself (not by
    imgforge's image reader): ``docker create`` + the archive API."""
    container = client.containers.create(image_id, labels={"io.imgforge.owner": os.environ["IMGFORGE_OWNER"]})
    try:
        stream, _ = container.get_archive(folder)
        data = io.BytesIO(b"".join(stream))
    finally:
        container.remove(force=True)
    out = {}
    with tarfile.open(fileobj=data) as tar:
        top = Path(folder).name
        for member in tar.getmembers():
            if member.isfile():
                rel = member.name.removeprefix(top + "/")
                extracted = tar.extractfile(member)
                assert extracted is not None
                out[rel] = extracted.read()
    return out


def _compare_served(client, reference: str, port: int, files: dict[str, bytes]) -> None:
    """Run the hardened image as Kubernetes will (its own non-root USER, read-only root, /tmp a
    tmpfs, no capabilities) and GET every file: a served one answers its exact bytes, a left-out
    one (dotfile, PHP) answers 404."""
    from imgforge.listing import is_hidden

    container = client.containers.run(
        reference,
        detach=True,
        read_only=True,
        tmpfs={"/tmp": "rw,size=16m"},
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        ports={f"{port}/tcp": ("127.0.0.1", None)},
        labels={"io.imgforge.owner": os.environ["IMGFORGE_OWNER"]},
    )
    try:
        container.reload()
        host_port = container.attrs["NetworkSettings"]["Ports"][f"{port}/tcp"][0]["HostPort"]
        base = f"http://127.0.0.1:{host_port}"
        _wait_ready(base, container)
        hidden = sorted(rel for rel in files if is_hidden(rel))
        assert hidden, "the fixture must hold left-out files"
        for rel, data in sorted(files.items()):
            response = requests.get(f"{base}/{rel}", timeout=10, headers={"Accept-Encoding": "identity"})
            if rel in hidden:
                assert response.status_code == 404, rel
                assert data not in response.content or not data.strip(), rel
            else:
                assert (response.status_code, response.content) == (200, data), rel
    finally:
        container.remove(force=True)


def _wait_ready(base: str, container) -> None:
    for _ in range(100):
        try:
            if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        container.reload()
        assert container.status in ("created", "running"), container.logs()[-2000:]
        time.sleep(0.2)
    pytest.fail(f"{base} never answered /healthz: {container.logs()[-2000:]!r}")
