"""The reader against the real engine: an image built with whiteouts, an opaque folder, setuid,
hard and symbolic links and foreign owners, read through ``docker save``, must show exactly the
tree Docker itself shows (``docker export`` of a container, ``stat`` inside a running one).
"""

from __future__ import annotations

import hashlib
import tarfile

import pytest
from image_fixtures import OWNER, export_view, links_of, view_of

from imgforge.image import DockerEngineSource, EntryType, ImageNotFound, read_fs, resolve

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# The engine's init layer puts these into every container (mount points, /.dockerenv, DNS files):
# they are the container's, not the image's.
_INIT = ("/.dockerenv", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/etc/mtab", "/dev", "/proc", "/sys")


def _container_only(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in _INIT)


@pytest.fixture(scope="module")
def engine_fs(h6_image, tmp_path_factory):
    spool = tmp_path_factory.mktemp("spool")
    with DockerEngineSource(h6_image.tag, spool_dir=spool) as source:
        image = resolve(source)
        yield source, image, read_fs(image)
    assert list(spool.iterdir()) == [], "the docker save spool must be deleted on close"


@pytest.fixture(scope="module")
def exported(docker_client, h6_image, tmp_path_factory):
    """``docker export`` of a created (never started) container of the image: Docker's merged tree."""
    container = docker_client.containers.create(h6_image.id, command=["true"], labels=OWNER)
    try:
        path = tmp_path_factory.mktemp("export") / "rootfs.tar"
        with open(path, "wb") as out:
            out.writelines(container.export())
    finally:
        container.remove(force=True)
    return export_view(path, _container_only)


def test_engine_save_is_the_legacy_format_here(engine_fs):
    source, image, _ = engine_fs
    # Debian's docker.io 20.10 writes manifest.json + <id>/layer.tar; the OCI form is tested with skopeo.
    assert source.archive_format == "docker-legacy"
    assert image.config_digest == source.image_id
    assert len(image.manifest.layers) == 5


def test_file_tree_equals_docker_export(engine_fs, exported):
    _, _, fs = engine_fs
    want_view, want_links, want_hashes = exported
    got = view_of(fs, _container_only)
    assert set(got) == set(want_view), sorted(set(got) ^ set(want_view))[:20]
    diff = {p: (got[p], want_view[p]) for p in got if got[p] != want_view[p]}
    assert diff == {}
    assert links_of(fs, _container_only) == want_links
    hashes = {
        path: hashlib.sha256(stream.read()).hexdigest()
        for path, _, stream in fs.open_files(lambda e: not _container_only(e.path))
    }
    assert hashes == want_hashes


def test_whiteouts_and_opaque_folder_were_really_in_the_layers(engine_fs):
    """Proof that the image exercises the whiteout code: the engine wrote both kinds of marker."""
    source, image, fs = engine_fs
    names: set[str] = set()
    for layer in image.manifest.layers[1:]:
        with source.open_blob(layer.digest) as blob, tarfile.open(fileobj=blob, mode="r|") as tar:
            names |= {m.name for m in tar}
    assert "h6/opaque/.wh..wh..opq" in names
    assert "h6/.wh.gone" in names
    assert "usr/share/nginx/html/.wh.index.html" in names
    assert "srv/www/.wh.removed.txt" in names
    assert fs.get("/h6/gone") is None
    assert fs.get("/h6/gone/b") is None
    assert fs.get("/usr/share/nginx/html/index.html") is None
    assert fs.children("/h6/opaque") == ["/h6/opaque/new"]
    assert fs.get("/h6/becomes-dir").is_dir
    assert fs.children("/h6/becomes-dir") == ["/h6/becomes-dir/inner"]
    assert not any(e.path.rsplit("/", 1)[1].startswith(".wh.") for e in fs)


def test_entries_match_stat_inside_a_running_container(docker_client, h6_image, engine_fs):
    _, _, fs = engine_fs
    paths = [
        "/h6/suid",
        "/h6/sgid",
        "/h6/owned",
        "/h6/owned/f",
        "/h6/keep/a",
        "/h6/hard",
        "/h6/sym-rel",
        "/h6/sym-abs",
        "/srv/www/index.html",
        "/srv/www/sub",
        "/var/mail",
    ]
    container = docker_client.containers.create(
        h6_image.id, entrypoint=["stat", "-c", "%n|%f|%u|%g|%s|%i|%h"], command=paths, labels=OWNER
    )
    try:
        container.start()
        assert container.wait(timeout=60)["StatusCode"] == 0
        lines = container.logs(stdout=True, stderr=False).decode().split()
    finally:
        container.remove(force=True)
    stat = {line.split("|")[0]: line.split("|")[1:] for line in lines}
    kinds = {0o100000: EntryType.FILE, 0o040000: EntryType.DIR, 0o120000: EntryType.SYMLINK}
    for path in paths:
        raw_mode, uid, gid, size, _, _ = stat[path]
        mode = int(raw_mode, 16)
        entry = fs.get(path)
        assert (entry.mode, entry.uid, entry.gid) == (mode & 0o7777, int(uid), int(gid)), path
        want_kind = kinds[mode & 0o170000]
        assert entry.type is want_kind or (entry.type is EntryType.HARDLINK and want_kind is EntryType.FILE), path
        if entry.is_regular:
            assert entry.size == int(size), path
    assert fs.get("/h6/suid").setuid
    assert fs.get("/h6/sgid").setgid
    assert fs.get("/var/mail").setgid
    assert fs.get("/h6/owned").mode == 0o1777
    assert (fs.get("/h6/owned/f").uid, fs.get("/h6/owned/f").gid) == (101, 101)
    # One inode in the container (same inode number, two links) is one hard-link pair here.
    assert stat["/h6/keep/a"][4] == stat["/h6/hard"][4]
    assert stat["/h6/hard"][5] == "2"
    hard = fs.get("/h6/hard") if fs.get("/h6/hard").type is EntryType.HARDLINK else fs.get("/h6/keep/a")
    assert hard.type is EntryType.HARDLINK
    assert hard.link_target in ("/h6/keep/a", "/h6/hard")
    assert fs.get("/h6/sym-abs").link_target == "/etc/nginx/nginx.conf"


def test_config_matches_docker_inspect(docker_client, h6_image, engine_fs):
    _, image, _ = engine_fs
    want = docker_client.api.inspect_image(h6_image.id)["Config"]
    got = image.config
    assert got.user == (want.get("User") or "")
    assert list(got.env) == (want.get("Env") or [])
    assert got.cmd == tuple(want["Cmd"]) if want.get("Cmd") else got.cmd is None
    assert got.entrypoint == (tuple(want["Entrypoint"]) if want.get("Entrypoint") else None)
    assert got.labels == (want.get("Labels") or {})
    assert got.labels["io.imgforge.owner"] == "h6-tests"
    assert got.working_dir == (want.get("WorkingDir") or "")
    assert got.stop_signal == (want.get("StopSignal") or "")
    assert list(got.exposed_ports) == sorted(want.get("ExposedPorts") or {})
    assert str(image.platform) == "linux/amd64"
    assert [h.created_by for h in got.history][-1].startswith("LABEL") or "LABEL" in got.history[-1].created_by


def test_read_files_follows_links_inside_the_image(engine_fs, exported):
    _, _, fs = engine_fs
    _, _, hashes = exported
    got = fs.read_files(
        [
            "/var/lib/dpkg/status",
            "/etc/nginx/sites-enabled/default",
            "/h6/sym-rel",
            "/h6/sym-climb",
            "/no/such/file",
            "/h6",
        ]
    )
    assert set(got) == {"/var/lib/dpkg/status", "/etc/nginx/sites-enabled/default", "/h6/sym-rel", "/h6/sym-climb"}
    assert hashlib.sha256(got["/var/lib/dpkg/status"]).hexdigest() == hashes["/var/lib/dpkg/status"]
    assert (
        hashlib.sha256(got["/etc/nginx/sites-enabled/default"]).hexdigest()
        == hashes["/etc/nginx/sites-available/default"]
    )
    assert got["/h6/sym-rel"] == b"keep\n"
    # ../../../../../../etc/passwd climbs no further than the image root: the image's passwd.
    assert got["/h6/sym-climb"] == fs.read_bytes("/etc/passwd")
    assert b"root:x:0:0" in got["/h6/sym-climb"]
    assert fs.resolve("/etc/nginx/sites-enabled/default") == "/etc/nginx/sites-available/default"


def test_extract_web_root(engine_fs, tmp_path):
    _, _, fs = engine_fs
    result = fs.extract("/srv/www", tmp_path / "www")
    files = sorted(str(p.relative_to(tmp_path / "www")) for p in (tmp_path / "www").rglob("*") if p.is_file())
    assert files == [".hidden", "alias.html", "index.html", "sub/deep/asset.css", "sub/page.html"]
    assert (tmp_path / "www" / "alias.html").read_bytes() == b"<h1>h6</h1>\n"
    assert not any(p.is_symlink() for p in (tmp_path / "www").rglob("*"))
    assert dict(result.skipped) == {
        "/srv/www/escape": "link leads outside /srv/www",
        "/srv/www/sub-link": "link to a dir (/srv/www/sub)",
        "/srv/www/dangling": "dangling link to /srv/www/missing",
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["www"]


def test_missing_engine_image(docker_client):
    with pytest.raises(ImageNotFound, match="no image 'imgforge-h6-tests/none:missing'"):
        DockerEngineSource("imgforge-h6-tests/none:missing", client=docker_client)
