"""``audit --image``: real images built by the engine FROM the local nginx base, read by the image
reader, judged by the same rules as repos. Each rule has an image that trips it at a known path,
and the image imgforge builds for the example site trips none at error or warning level."""

from __future__ import annotations

import json
import subprocess

import pytest
from audit_images import BROKEN_CONF, ENVSUBST, FAULTS, NAMED, ROOT, Spec

from imgforge.audit import audit_image
from imgforge.audit.findings import Finding
from imgforge.image import DockerEngineSource, resolve

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def audit_json(cli_main, ref: str) -> tuple[int, dict]:
    code, out, err = cli_main("audit", "--image", ref, "--json")
    assert code in (0, 1), err
    return code, json.loads(out)


def found(data: dict) -> set[tuple[str, str, int | None]]:
    return {(f["rule"], f["file"], f["line"]) for f in data["findings"]}


def _audit(fault_images, spec: Spec) -> list[Finding]:
    image_id = fault_images(spec)
    with DockerEngineSource(image_id) as source:
        return audit_image(resolve(source), f"docker:{image_id}").findings


@pytest.fixture(scope="module")
def faults_findings(fault_images) -> list[Finding]:
    return _audit(fault_images, FAULTS)


def _where(findings: list[Finding]) -> set[tuple[str, str, int | None]]:
    return {(f.rule, f.file, f.line) for f in findings}


# -- the image imgforge builds ------------------------------------------------------------------


def test_the_example_image_imgforge_builds_is_clean(example_image, cli_main):
    code, data = audit_json(cli_main, f"docker:{example_image}")
    assert code == 0
    assert data["summary"] == {"error": 0, "warning": 0, "info": 0}, data["findings"]
    assert data["path"] == f"docker:{example_image}"
    assert data["digest"].startswith("sha256:")
    assert data["id"].startswith("sha256:")


def test_an_image_is_read_once(example_image):
    """The prefetch keeps what the rules read (configs, scripts, web-root text) from the first pass:
    no layer blob is opened a second time."""
    opened: list[str] = []

    class Counting:
        def __init__(self, inner):
            self.inner = inner

        def describe(self):
            return self.inner.describe()

        def get_manifest(self, reference, accept, max_bytes):
            return self.inner.get_manifest(reference, accept, max_bytes)

        def open_blob(self, digest):
            opened.append(digest)
            return self.inner.open_blob(digest)

    with DockerEngineSource(example_image) as source:
        image = resolve(Counting(source))
        layers = [d.digest for d in image.manifest.layers]
        opened.clear()
        audit = audit_image(image, example_image)
    assert audit.findings == []
    assert sorted(opened) == sorted(layers)  # each layer once, no second pass


# -- the precedent shapes -------------------------------------------------------------------------


def test_root_image_with_user_nginx(fault_images):
    findings = _audit(fault_images, ROOT)
    got = _where(findings)
    conf, site, www = "/etc/nginx/nginx.conf", "/etc/nginx/conf.d/default.conf", "/usr/share/nginx/html"
    assert {
        ("IMG001", conf, 1),  # user nginx;
        ("IMG002", conf, 3),  # pid /var/run/nginx/nginx.pid
        ("IMG003", conf, None),  # no temp paths
        ("IMG004", site, 2),  # listen 80
        ("IMG004", site, 3),  # listen [::]:80
        ("IMG005", conf, 9),  # http without server_tokens off
        ("IMG010", "config.User", None),
        ("IMG013", "config.ExposedPorts", None),
        ("IMG030", f"{www}/mail.php", None),
        ("IMG032", f"{www}/mail.php", 3),
        ("IMG033", f"{www}/Thumbs.db", None),
        ("IMG033", f"{www}/design/hero.psd", None),
        ("IMG040", "config.StopSignal", None),
        ("IMG050", "/var/tmp", None),
        ("IMG050", "/run/lock", None),
        ("IMG052", "/var/lib/apt/lists", None),
    } == got


def test_envsubst_without_gettext_into_etc(fault_images):
    findings = _audit(fault_images, ENVSUBST)
    assert [(f.rule, f.file, f.line) for f in findings] == [
        ("IMG020", "/entrypoint.sh", 3),
        ("IMG021", "/entrypoint.sh", 3),
    ]
    assert "install gettext" in findings[0].message
    assert "/etc/nginx/conf.d/default.conf" in findings[1].message


def test_user_by_name_and_a_web_root_it_owns(fault_images):
    findings = _audit(fault_images, NAMED)
    www = "/usr/share/nginx/html"
    assert [(f.rule, f.file) for f in findings] == [
        ("IMG035", f"{www}/css"),
        ("IMG035", f"{www}/index.html"),
        ("IMG012", "config.User"),
    ]
    css = next(f for f in findings if f.file == f"{www}/css")
    assert "and the 1 entries under it" in css.message  # the folder stands for its file
    assert "owned by the runtime user nginx" in css.message


# -- the rest of the contract, each at its own path of one image -----------------------------------


def test_faults_image_findings(faults_findings):
    conf, www = "/etc/nginx/nginx.conf", "/srv/www"
    assert _where(faults_findings) == {
        ("IMG003", conf, 10),  # proxy_temp_path under /var/cache
        ("IMG005", conf, 14),  # server_tokens build
        ("IMG006", conf, 17),  # access_log to a file; error_log /dev/stderr and a link to /dev/stdout are fine
        ("IMG021", "/usr/local/bin/start.sh", 3),  # sed -i into /etc/nginx/conf.d
        ("IMG021", "/usr/local/bin/start.sh", 5),  # >> /var/log/start.log
        ("IMG030", f"{www}/backup.sh", None),
        ("IMG031", f"{www}/.env", None),
        ("IMG031", f"{www}/.git", None),
        ("IMG032", f"{www}/.env", 1),
        ("IMG033", f"{www}/notes.txt~", None),
        ("IMG035", f"{www}/drop", None),  # group-writable, group 101 = the runtime group
        ("IMG035", f"{www}/mine.html", None),  # owned by UID 100
        ("IMG040", "config.StopSignal", None),  # SIGTERM
        ("IMG050", "/srv/uploads", None),  # chmod -R 777: one finding for the folder
        ("IMG051", "/usr/local/bin/suid-helper", None),
        ("IMG052", "/root/.cache/pip", None),
    }


def test_faults_messages(faults_findings):
    by = {(f.rule, f.file): f.message for f in faults_findings}
    assert "nginx refuses to serve it" in by[("IMG031", "/srv/www/.env")]
    assert by[("IMG050", "/srv/uploads")].startswith("/srv/uploads and the 1 entries under it: world-writable")
    assert "setuid" in by[("IMG051", "/usr/local/bin/suid-helper")]
    assert "writable by the runtime user 100:101" in by[("IMG035", "/srv/www/drop")]
    assert "SIGTERM" in by[("IMG040", "config.StopSignal")]


def test_root_user_and_missing_web_root(fault_images):
    faults_id = fault_images(FAULTS)
    as_root = Spec("faults-as-root", f"FROM {faults_id}\nUSER 0:0\nRUN rm -rf /srv/www\n", {})
    findings = _audit(fault_images, as_root)
    rules = {(f.rule, f.file) for f in findings}
    assert ("IMG011", "config.User") in rules
    assert ("IMG034", "/etc/nginx/nginx.conf") in rules
    assert not any(f.rule in ("IMG030", "IMG031", "IMG032", "IMG033", "IMG035") for f in findings)


def test_image_without_nginx(debian_base, cli_main):
    code, data = audit_json(cli_main, f"docker:{debian_base}")
    assert ("IMG007", "/etc/nginx/nginx.conf", None) in found(data)
    assert code == 1  # and it runs as root


# -- sources and errors ---------------------------------------------------------------------------


def test_oci_layout_source_reads_the_same(fault_images, faults_findings, tmp_path, cli_main):
    image_id = fault_images(FAULTS)
    layout = tmp_path / "layout"
    subprocess.run(["skopeo", "copy", "--quiet", f"docker-daemon:{image_id}", f"oci:{layout}:faults"], check=True)
    code, data = audit_json(cli_main, f"oci:{layout}:faults")
    assert code == 1
    assert found(data) == _where(faults_findings)


def test_unparsable_config_in_the_image(fault_images, cli_main):
    image_id = fault_images(BROKEN_CONF)
    code, out, err = cli_main("audit", "--image", f"docker:{image_id}")
    assert (code, out) == (2, "")
    assert err.startswith(f"error: docker:{image_id}: /etc/nginx/nginx.conf:")
    assert "cannot parse nginx config" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("--image", "docker:imgforge-p3-tests/no-such-image:x"), 4, "docker engine: no image"),
        (("--image", "oci:/nonexistent/layout"), 4, "not an OCI image layout"),
        (("--image", "docker:"), 2, "nothing after docker:"),
        ((), 2, "give a repo PATH or --image REF"),
        ((".", "--image", "docker:x"), 2, "give a repo PATH or --image REF"),
    ],
)
def test_bad_references_are_one_error_line(cli_main, args, code, message):
    got, out, err = cli_main("audit", *args)
    assert got == code
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert message in err
