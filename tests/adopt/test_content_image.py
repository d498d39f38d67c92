"""``[source] image`` + ``content_dir``: a site's content read from a container image, from the real
test registry (and the local engine where the registry does not hold it), through the same listing
rules and hashing as a folder on disk."""

from __future__ import annotations

import json

import pytest

from imgforge import build, config, render
from imgforge.content import cache_dir
from tests.adopt.conftest import RootImage
from tests.conftest import remove_test_image

pytestmark = [pytest.mark.docker, pytest.mark.registry]

WWW = {
    "www/index.html": "<!doctype html><title>linked</title>\n",
    "www/page.html": "<p>page</p>\n",
    "www/gone.html": "<p>deleted by a later layer</p>\n",
    "www/.env": "SMTP_PASSWORD=hunter2\n",
    "www/mail.php": "<?php mail($_POST['to'], 'x', 'y');\n",
    "www/css/site.css": "body { margin: 0 }\n",
}
# Links and a whiteout as a later layer makes them: ``rm`` leaves a .wh. file, ``ln`` copies the page up.
LINKED = RootImage(
    "linked",
    """
    FROM {base}
    COPY www/ /srv/www/
    RUN rm /srv/www/gone.html \\
     && ln -s page.html /srv/www/alias.html \\
     && ln -s /srv/www/css/site.css /srv/www/abs-alias.css \\
     && ln /srv/www/page.html /srv/www/hard.html \\
     && ln -s .env /srv/www/innocent.html \\
     && ln /srv/www/mail.php /srv/www/mailer-copy.txt
    """,
    WWW,
)
ESCAPE = RootImage(
    "escape",
    """
    FROM {base}
    COPY www/ /srv/www/
    RUN ln -s /etc/passwd /srv/www/passwd.html
    """,
    {"www/index.html": "<p>x</p>\n"},
)
SERVED = ["abs-alias.css", "alias.html", "css/site.css", "hard.html", "index.html", "page.html"]
LEFT_OUT = [".env", "innocent.html", "mail.php", "mailer-copy.txt"]


def _site(make_catalog, image: str, content_dir: str = "/srv/www") -> tuple[config.Catalog, config.Site]:
    root = make_catalog(sites={"linked": {"source": {"image": image, "content_dir": content_dir}}})
    catalog = config.load_catalog(root)
    return catalog, catalog.site("linked")


def test_image_source_serves_the_folder_with_the_same_rules(root_images, basic_registry, registry_env, make_catalog):
    registry_env(basic_registry)
    pushed = root_images(LINKED)
    catalog, site = _site(make_catalog, pushed.pinned)
    context = render.prepare(catalog, site)
    assert context.content_files == SERVED
    assert context.left_out == LEFT_OUT  # a link or hard link to a left-out file is left out too
    served = {rel: (context.content.path / rel).read_bytes() for rel in SERVED}
    assert served["alias.html"] == served["hard.html"] == WWW["www/page.html"].encode()
    assert served["abs-alias.css"] == WWW["www/css/site.css"].encode()
    assert not (context.content.path / "gone.html").exists()  # the whiteout applied
    hexdigest = pushed.digest.removeprefix("sha256:")
    assert context.content.path.parent == cache_dir() / "images" / f"sha256-{hexdigest}"
    assert (context.content.revision, context.content.source) == (pushed.digest, pushed.pinned)


def test_sites_shows_an_image_source(make_catalog, cli_main):
    image = "127.0.0.1:5000/fleet/site@sha256:" + "0" * 64
    root = make_catalog(sites={"linked": {"source": {"image": image, "content_dir": "/var/www/html"}}})
    code, out, _ = cli_main("sites", "--json", "--root", str(root))
    assert code == 0
    assert json.loads(out)[0]["content"] == f"image {image}:/var/www/html"


def test_a_pinned_image_is_read_once_then_from_the_cache(
    root_images, basic_registry, registry_env, make_catalog, monkeypatch
):
    registry_env(basic_registry)
    pushed = root_images(LINKED)
    catalog, site = _site(make_catalog, pushed.pinned)
    first = render.prepare(catalog, site).content.path
    monkeypatch.setenv("IMGFORGE_REGISTRY_PASSWORD", "wrong-" + basic_registry.password)
    again = render.prepare(catalog, site)  # no registry call: the digest names the cached folder
    assert again.content.path == first
    assert again.content_files == SERVED
    by_tag = _site(make_catalog, pushed.reference)
    with pytest.raises(Exception, match=r"rejected|401|unauthorized|denied") as caught:
        render.prepare(*by_tag)  # a tag is asked of the registry, whose refusal is not "not there"
    assert getattr(caught.value, "exit_code", None) == 7
    assert basic_registry.password not in str(caught.value)


def test_labels_record_the_source_image_digest(root_images, basic_registry, registry_env, make_catalog, docker_client):
    registry_env(basic_registry)
    pushed = root_images(LINKED)
    catalog, site = _site(make_catalog, pushed.reference)  # by tag: the digest is found and recorded
    result = build.build_site(catalog, site, force=True)
    try:
        labels = docker_client.images.get(result.id).labels
        assert labels["org.opencontainers.image.revision"] == pushed.digest
        assert labels["org.opencontainers.image.source"] == pushed.pinned
    finally:
        remove_test_image(docker_client, result.id, site.image)


def test_an_image_no_registry_holds_is_read_from_the_engine(root_images, basic_registry, registry_env, make_catalog):
    registry_env(basic_registry)
    local = root_images(LINKED, push=False)
    catalog, site = _site(make_catalog, local.reference)
    context = render.prepare(catalog, site)
    assert (context.content_files, context.left_out) == (SERVED, LEFT_OUT)
    assert context.content.revision == local.image_id
    assert context.content.source == f"{local.reference} (local engine image {local.image_id})"


def test_a_link_out_of_the_folder_is_refused_naming_it(
    root_images, basic_registry, registry_env, make_catalog, cli_main
):
    registry_env(basic_registry)
    pushed = root_images(ESCAPE)
    root = make_catalog(sites={"escape": {"source": {"image": pushed.pinned, "content_dir": "/srv/www"}}})
    code, out, err = cli_main("render", "escape", "--root", str(root), "--out", str(root.parent / "out"))
    assert (code, out) == (4, "")
    assert err.strip().splitlines() == [
        "error: sites/escape.toml: source.image: /srv/www/passwd.html links outside the content folder /srv/www"
    ]
    assert not (root.parent / "out").exists()


@pytest.mark.parametrize(
    ("image", "content_dir", "message"),
    [
        (
            "{host}/w15/nowhere:v1",
            "/srv/www",
            "sites/linked.toml: source.image {host}/w15/nowhere:v1: not in its registry nor in the local engine",
        ),
        (
            "{pinned}",
            "/srv/nothing",
            "sites/linked.toml: source.image: registry repository w15/linked ({short}) has no folder /srv/nothing",
        ),
    ],
)
def test_missing_image_or_folder_is_not_found(
    root_images, basic_registry, registry_env, make_catalog, cli_main, image, content_dir, message
):
    registry_env(basic_registry)
    pushed = root_images(LINKED)
    fill = {"host": basic_registry.host, "pinned": pushed.pinned, "short": pushed.digest[:19]}
    root = make_catalog(sites={"linked": {"source": {"image": image.format(**fill), "content_dir": content_dir}}})
    code, out, err = cli_main("render", "linked", "--root", str(root), "--out", str(root.parent / "out"))
    assert (code, out) == (4, "")
    assert err.strip().splitlines() == ["error: " + message.format(**fill)]


def test_the_folder_is_held_to_the_readers_extract_cap(root_images, docker_client, make_catalog, tmp_path):
    """An image is hostile input: what its folder makes us write is capped like ``extract``."""
    from imgforge.content_image import _extract
    from imgforge.errors import LimitExceeded
    from imgforge.image import DockerEngineSource, Limits, read_fs, resolve

    local = root_images(LINKED, push=False)
    _, site = _site(make_catalog, local.reference)
    total = sum(len(text) for rel, text in WWW.items() if rel != "www/gone.html")
    cache = tmp_path / "cache"
    cache.mkdir()
    with DockerEngineSource(local.image_id) as source:
        fs = read_fs(resolve(source, limits=Limits(max_extract_bytes=total - 1)))
        with pytest.raises(LimitExceeded, match="max_extract_bytes"):
            _extract(fs, "/srv/www", cache / "out", site)
    assert list(cache.iterdir()) == []  # nothing written, no staging folder left either
    with DockerEngineSource(local.image_id) as source:
        fs = read_fs(resolve(source, limits=Limits(max_extract_bytes=total)))
        _extract(fs, "/srv/www", cache / "out", site)
    assert (cache / "out" / "index.html").read_text() == WWW["www/index.html"]
