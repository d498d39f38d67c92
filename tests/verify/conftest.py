"""One real image of a test site, plus deliberately broken variants layered on top of it.

Every variant is ``FROM <the good image>`` plus one or two small layers, so a dozen of them cost
seconds, not a dozen full builds. The broken files are made by editing what imgforge.render
produced for the good image; each edit asserts that the text it replaces is there, so a change
of the templates turns into a loud test failure rather than a variant that breaks nothing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import textwrap
import uuid
from dataclasses import dataclass
from pathlib import Path

import docker.errors
import pytest

from imgforge import build, config
from imgforge.content_manifest import IMAGE_PATH, LABEL, ContentManifest
from imgforge.verify.runner import OWNER_LABEL, RUN_LABEL

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "example-site" / "www-data"
TOKEN = uuid.uuid4().hex[:8]
# Junk real web roots hold: server-side source with a secret, a dotfile, an editor backup.
JUNK = {
    "contact.php": "<?php define('SMTP_PASSWORD', 'hunter2'); mail($_POST['to'], 'hi', 'x'); ?>\n",
    ".env": "SMTP_PASSWORD=hunter2\n",
    "drafts/about.html.bak": "<h1>old about page</h1>\n",
}


@dataclass
class Good:
    """The test site's catalog, the site, its image id, content folder, the files render wrote, its manifest."""

    catalog: config.Catalog
    site: config.Site
    image_id: str
    context: Path
    source: Path
    manifest: ContentManifest

    def rendered(self, name: str) -> str:
        return (self.context / name).read_text(encoding="utf-8")

    def edited(self, name: str, old: str, new: str) -> str:
        text = self.rendered(name)
        assert old in text, f"{name} no longer contains {old!r}: update this broken variant"
        return text.replace(old, new)

    def manifest_files(self, label: bool = True, **changes: object) -> tuple[list[str], dict[str, tuple[str, int]]]:
        """A variant's lines and files that put the good manifest with ``changes`` into the image.

        With ``label`` the image's manifest-digest label follows (an image built so); without it,
        the label still names the good manifest (a manifest edited after the build).
        """
        data = ContentManifest.of({**self.manifest.model_dump(exclude={"schema_id", "version"}), **changes}).to_bytes()
        lines = [f"LABEL {LABEL}={ContentManifest.parse(data, 'test').digest}"] if label else []
        return lines, {IMAGE_PATH: (data.decode("ascii"), 0o644)}


@pytest.fixture(scope="session")
def good(docker_client, nginx_base, tmp_path_factory) -> Good:
    """A SPA site with its own UID, GID, port and header, built for real through build_site."""
    base = tmp_path_factory.mktemp("verify-site")
    content = base / "site" / "www-data"
    shutil.copytree(EXAMPLE, content)
    for rel, text in JUNK.items():
        (content / rel).parent.mkdir(parents=True, exist_ok=True)
        (content / rel).write_text(text, encoding="utf-8")
    (base / "catalog" / "sites").mkdir(parents=True)
    (base / "catalog" / "imgforge.toml").write_text("[defaults]\n", encoding="utf-8")
    (base / "catalog" / "sites" / "web.toml").write_text(
        textwrap.dedent(f"""\
        image = "127.0.0.1:5000/imgforge-verify-test/web"
        tag = "t{TOKEN}"
        profile = "prebuilt"
        base_image = "{nginx_base}"
        uid = 10000
        gid = 10001
        port = 8081
        fallback = "spa"
        [source]
        path = "{base / "site"}"
        [headers]
        Permissions-Policy = "camera=()"
        """),
        encoding="utf-8",
    )
    catalog = config.load_catalog(base / "catalog")
    site = catalog.site("web")
    result = build.build_site(catalog, site, out_dir=base / "context")
    yield Good(catalog, site, result.id, base / "context", content, result.manifest)
    _remove_image(docker_client, site.reference)


@pytest.fixture(scope="session")
def variant(good, docker_client, tmp_path_factory):
    """``variant(name, ["USER www-data"], {"path/in/context": (text, mode)})`` -> image id.

    Files are COPYed over the image as root; the good image's numeric USER is restored after the
    lines unless the lines set their own.
    """
    made: dict[str, str] = {}

    def make(name: str, lines: list[str], files: dict[str, tuple[str, int]] | None = None) -> str:
        if name in made:
            return made[name]
        ctx = tmp_path_factory.mktemp(f"variant-{name}")
        # Variants inherit the good image's inputs-digest label; without a label of their own,
        # build_site's skip logic would take one of them for the good image (see the report).
        steps = [f"FROM {good.image_id}", f"LABEL {build.DIGEST_LABEL}=variant-{name}", "USER 0:0"]
        for i, (dest, (text, mode)) in enumerate((files or {}).items()):
            src = ctx / f"f{i}"
            src.write_text(text, encoding="utf-8")
            src.chmod(mode)
            steps.append(f"COPY f{i} {dest}")
        steps += lines
        if not any(line.startswith("USER ") for line in lines):
            steps.append(f"USER {good.site.uid}:{good.site.gid}")
        (ctx / "Dockerfile").write_text("\n".join(steps) + "\n", encoding="utf-8")
        tag = f"imgforge-verify-test/{name}:{TOKEN}"
        for chunk in docker_client.api.build(path=str(ctx), tag=tag, rm=True, forcerm=True, decode=True):
            assert "error" not in chunk, f"variant {name} did not build: {chunk}"
        made[name] = docker_client.images.get(tag).id
        return made[name]

    yield make
    for name in made:
        _remove_image(docker_client, f"imgforge-verify-test/{name}:{TOKEN}")


@pytest.fixture(autouse=True)
def no_leftover_containers(request):
    """After every test, not one container of this session's verification runs may remain.

    Filtered on this session's owner label too (tests/conftest.py): other people's test sessions
    on the same engine have containers of their own in flight.
    """
    yield
    if "docker_client" not in request.fixturenames and "good" not in request.fixturenames:
        return
    client = request.getfixturevalue("docker_client")  # the session's, whatever a test did to DOCKER_HOST
    mine = [RUN_LABEL, f"{OWNER_LABEL}={os.environ['IMGFORGE_OWNER']}"]
    left = client.api.containers(all=True, filters={"label": mine})
    for container in left:  # clean up for the next test, then fail this one
        with contextlib.suppress(docker.errors.NotFound):
            client.api.remove_container(container["Id"], force=True)
    assert not left, f"containers left behind: {[(c['Names'], c['State'], c['Status']) for c in left]}"


def _remove_image(client, ref: str) -> None:
    with contextlib.suppress(docker.errors.APIError):
        client.images.remove(ref, force=True)
