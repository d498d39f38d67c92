"""Fixtures for the image reader: a real image built by the engine, skopeo's copy of it, and a
small writer for hand-made OCI layouts (hostile layers, index shapes the engine cannot build).

Everything the tests create in the engine carries ``io.imgforge.owner=h6-tests`` and is removed by
its id in the fixture's teardown; nothing else in the engine is touched.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# --import-mode=importlib does not put test folders on sys.path; the helper module is imported by name.
sys.path.insert(0, str(Path(__file__).parent))

from image_fixtures import OWNER, LayoutWriter

from tests.conftest import remove_test_image

# A Dockerfile whose layers hold every case the reader must get right, made by the engine itself:
# whiteouts of files and folders (also of a base-image file), an opaque folder (rm -rf + mkdir
# in a later layer), a file replaced by a folder, setuid/setgid, a hard link, relative, absolute
# and climbing symlinks, files owned by 101:101, a sticky world-writable folder.
DOCKERFILE = """\
FROM {base}
RUN mkdir -p /h6/keep /h6/gone /h6/opaque/sub /h6/owned \\
 && echo keep > /h6/keep/a && echo gone > /h6/gone/b \\
 && echo old > /h6/opaque/old && echo old-sub > /h6/opaque/sub/x && echo file > /h6/becomes-dir
RUN rm -rf /h6/gone /h6/opaque /h6/becomes-dir /usr/share/nginx/html/index.html \\
 && mkdir -p /h6/opaque /h6/becomes-dir && echo new > /h6/opaque/new && echo inner > /h6/becomes-dir/inner \\
 && cp /bin/true /h6/suid && chmod 4755 /h6/suid && cp /bin/true /h6/sgid && chmod 2755 /h6/sgid \\
 && ln /h6/keep/a /h6/hard && ln -s ../h6/keep/a /h6/sym-rel && ln -s /etc/nginx/nginx.conf /h6/sym-abs \\
 && ln -s ../../../../../../etc/passwd /h6/sym-climb \\
 && echo owned > /h6/owned/f && chown -R 101:101 /h6/owned && chmod 1777 /h6/owned
COPY --chown=101:101 site/ /srv/www/
RUN rm /srv/www/removed.txt && ln -s /srv/www/index.html /srv/www/alias.html \\
 && ln -s /etc/passwd /srv/www/escape && ln -s sub /srv/www/sub-link && ln -s missing /srv/www/dangling
LABEL io.imgforge.h6-run="{run}"
"""
SITE = {
    "index.html": b"<h1>h6</h1>\n",
    "sub/page.html": b"<p>page</p>\n",
    "sub/deep/asset.css": b"body{}\n" * 100,
    ".hidden": b"secret\n",
    "removed.txt": b"gone soon\n",
}


@dataclass(frozen=True)
class BuiltImage:
    id: str
    tag: str


@pytest.fixture(scope="session")
def h6_image(docker_client, nginx_base, tmp_path_factory) -> Iterator[BuiltImage]:
    """The test image, built without cache (so its id is ours alone) and removed by id afterwards."""
    context = tmp_path_factory.mktemp("h6-context")
    run = uuid.uuid4().hex[:12]
    (context / "Dockerfile").write_text(DOCKERFILE.format(base=nginx_base, run=run))
    for rel, data in SITE.items():
        (context / "site" / rel).parent.mkdir(parents=True, exist_ok=True)
        (context / "site" / rel).write_bytes(data)
    tag = f"imgforge-h6-tests/reader:{run}"
    image, _ = docker_client.images.build(path=str(context), tag=tag, labels=OWNER, rm=True, forcerm=True, nocache=True)
    try:
        yield BuiltImage(image.id, tag)
    finally:
        remove_test_image(docker_client, image.id, tag.split(":")[0])


@pytest.fixture(scope="session")
def skopeo_layout(h6_image, tmp_path_factory) -> Path:
    """skopeo's own OCI layout of the test image (gzip layers, an OCI config it rewrote)."""
    dest = tmp_path_factory.mktemp("skopeo") / "layout"
    subprocess.run(["skopeo", "copy", "--quiet", f"docker-daemon:{h6_image.tag}", f"oci:{dest}:h6"], check=True)
    return dest


@pytest.fixture
def layout(tmp_path) -> LayoutWriter:
    return LayoutWriter(tmp_path / "layout")
