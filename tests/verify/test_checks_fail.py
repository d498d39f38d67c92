"""Every check can fail: each broken variant of the good image fails exactly its own check.

The variants are the mistakes people really make when they de-root an nginx image by hand (the
context of issue 3): a user name instead of numbers, an entrypoint that ignores LISTEN_PORT or
does not ``exec``, a lost ``add_header`` in an asset location, PHP sources served as text, ...
A variant that changes the files of the web root also fails ``content_manifest`` (the image no
longer holds what its manifest lists); ``ALSO_CONTENT`` names those.
"""

from __future__ import annotations

import os
import time

import pytest

from imgforge import verify
from imgforge.content_manifest import IMAGE_PATH
from imgforge.render import CONTENT_ROOT
from imgforge.verify.runner import ORDER, OWNER_LABEL, RUN_LABEL

pytestmark = pytest.mark.docker

ASSET_HEADERS = """        include /etc/nginx/imgforge/headers.conf;
        add_header Cache-Control"""
HIDDEN_LOCATION = "    location ~* \\.(?:php|"


def _failing(report) -> set[str]:
    return {c.name for c in report.checks if not c.ok}


def _detail(report, name: str) -> str:
    return next(c.detail for c in report.checks if c.name == name)


def _site_conf(good, old: str, new: str) -> dict:
    return {"/etc/nginx/imgforge/site.conf": (good.edited("imgforge/site.conf", old, new), 0o644)}


def _without_block(good, name: str, starts: str) -> str:
    """The rendered file minus the `location` block that starts with ``starts``."""
    text = good.rendered(name)
    at = text.index(starts)
    end = text.index("\n    }\n", at) + len("\n    }\n")
    return text[:at] + text[end:]


# name -> (the check that must fail, how to break the image, a word its detail must contain)
VARIANTS = {
    "user-name": ("image_config", lambda g: (["USER www-data"], {}), "not numeric"),
    "root-group": (
        "processes",
        lambda g: (
            [
                # A passwd entry for the UID makes the engine (like the kubelet) add the groups that list it.
                f"RUN echo 'web:x:{g.site.uid}:{g.site.gid}::/nonexistent:/usr/sbin/nologin' >> /etc/passwd"
                " && sed -i 's/^root:x:0:$/root:x:0:web/' /etc/group && grep -q '^root:x:0:web$' /etc/group"
            ],
            {},
        ),
        "supplementary groups ['0']",
    ),
    # A file the manifest does not list, in a web root otherwise exactly as built.
    "file-added": (
        "content_manifest",
        lambda g: ([], {f"{CONTENT_ROOT}/notes.txt": ("added after the build\n", 0o644)}),
        "not in the manifest: '/notes.txt'",
    ),
    "file-missing": ("content_served", lambda g: ([f"RUN rm {CONTENT_ROOT}/about.html"], {}), "/about.html"),
    "no-mime-types": (
        "content_types",
        lambda g: (
            [],
            {
                "/etc/nginx/nginx.conf": (
                    g.edited("nginx.conf", "include /etc/nginx/mime.types;", "# mime.types forgotten"),
                    0o644,
                )
            },
        ),
        "application/octet-stream",
    ),
    "no-spa-fallback": (
        "missing_path",
        lambda g: ([], _site_conf(g, "try_files $uri $uri/ /index.html;", "try_files $uri $uri/ =404;")),
        "expected 200",
    ),
    # The hand-made way: the whole web root copied in, and no deny rule for server-side source.
    "php-as-text": (
        "hidden_files",
        lambda g: (
            [],
            {
                "/etc/nginx/imgforge/site.conf": (_without_block(g, "imgforge/site.conf", HIDDEN_LOCATION), 0o644),
                f"{CONTENT_ROOT}/contact.php": ((g.source / "contact.php").read_text(), 0o644),
            },
        ),
        "/contact.php",
    ),
    "symlink-to-etc": ("path_traversal", lambda g: ([f"RUN ln -s /etc {CONTENT_ROOT}/etc"], {}), "root:x:0:0"),
    "no-healthz": (
        "healthz",
        lambda g: (
            [],
            {
                "/etc/nginx/imgforge/site.conf": (
                    _without_block(g, "imgforge/site.conf", "    location = /healthz {"),
                    0o644,
                )
            },
        ),
        "/healthz",
    ),
    "server-tokens": (
        "server_header",
        lambda g: (
            [],
            {"/etc/nginx/nginx.conf": (g.edited("nginx.conf", "server_tokens off;", "server_tokens on;"), 0o644)},
        ),
        "nginx/",
    ),
    "asset-headers-lost": (
        "security_headers",
        lambda g: ([], _site_conf(g, ASSET_HEADERS, "        add_header Cache-Control")),
        "(missing)",
    ),
    "ignores-listen-port": (
        "listen_port",
        lambda g: (
            [],
            {
                "/usr/local/bin/imgforge-entrypoint": (
                    g.edited("imgforge-entrypoint", 'port="${LISTEN_PORT:-}"', f'port="{g.site.port}"'),
                    0o755,
                )
            },
        ),
        "no HTTP answer on 9090",
    ),
    "owner-only-content": (
        "arbitrary_uid",
        lambda g: ([f"RUN chown -R {g.site.uid}:{g.site.gid} {CONTENT_ROOT} && chmod -R o-rwx {CONTENT_ROOT}"], {}),
        "not the content file",
    ),
    "setuid-helper": (
        "no_setuid",
        lambda g: (["RUN cp /bin/true /usr/local/bin/helper && chmod 4755 /usr/local/bin/helper"], {}),
        "/usr/local/bin/helper",
    ),
    # A copied tuning line: workers cannot renice without CAP_SYS_NICE, log [alert] and go on serving.
    "worker-priority": (
        "startup_logs",
        lambda g: (
            [],
            {
                "/etc/nginx/nginx.conf": (
                    g.edited("nginx.conf", "worker_processes auto;", "worker_processes auto;\nworker_priority -5;"),
                    0o644,
                )
            },
        ),
        "setpriority(-5) failed",
    ),
    "entrypoint-without-exec": (
        "stop",
        lambda g: (
            [],
            {"/usr/local/bin/imgforge-entrypoint": (g.edited("imgforge-entrypoint", 'exec "$@"', '"$@"'), 0o755)},
        ),
        "after SIGQUIT",
    ),
}


ALSO_CONTENT = {"file-missing": "missing: '/about.html'", "php-as-text": "'/contact.php'", "symlink-to-etc": "'/etc'"}


def test_every_check_has_a_breaking_variant():
    assert sorted(check for check, _, _ in VARIANTS.values()) == sorted(ORDER)
    assert set(ALSO_CONTENT) <= set(VARIANTS)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_broken_variant_fails_exactly_its_check(name, good, variant):
    check, recipe, word = VARIANTS[name]
    lines, files = recipe(good)
    image = variant(name, lines, files)
    report = verify.run_site(good.catalog, good.site, image=image)
    assert _failing(report) == {check} | ({"content_manifest"} if name in ALSO_CONTENT else set()), report.to_dict()
    assert word in _detail(report, check)
    if name in ALSO_CONTENT:
        assert ALSO_CONTENT[name] in _detail(report, "content_manifest")
    assert not report.ok
    assert verify.last_result(image)["ok"] is False  # release and push will refuse it


def test_good_image_passes_every_check(good):
    report = verify.run_site(good.catalog, good.site)
    assert [c.name for c in report.checks] == list(ORDER)
    assert report.ok, [c for c in report.checks if not c.ok]
    assert "of 4 hidden content file(s)" in _detail(report, "hidden_files")  # .htaccess, .env, .php, .bak
    assert verify.last_result(good.image_id) == report.to_dict()


def test_a_404_site_passes_with_its_own_fallback(good, variant):
    """The same content with `=404`, built with a manifest that says fallback "404": the image decides."""
    lines, files = good.manifest_files(fallback="404")
    files |= _site_conf(good, "try_files $uri $uri/ /index.html;", "try_files $uri $uri/ =404;")
    image = variant("fallback-404-built", lines, files)
    report = verify.run_image(image)
    assert report.ok, [c for c in report.checks if not c.ok]
    assert "404" in _detail(report, "missing_path")
    assert report.site == "web"


def test_content_manifest_names_each_file_that_differs(good, variant):
    """A derived image: one served file with other bytes, an extra file, a left-out file put back."""
    image = variant(
        "content-changed",
        [],
        {
            f"{CONTENT_ROOT}/css/site.css": ("body { color: red }\n", 0o644),
            f"{CONTENT_ROOT}/extra.html": ("<p>not built</p>\n", 0o644),
            f"{CONTENT_ROOT}/.env": ((good.source / ".env").read_text(), 0o644),
        },
    )
    report = verify.run_site(good.catalog, good.site, image=image)
    detail = _detail(report, "content_manifest")
    assert "other bytes than the manifest's: '/css/site.css'" in detail
    assert "not in the manifest: '/extra.html'" in detail
    assert "left out by the build but present: '/.env'" in detail
    assert _failing(report) == {"content_manifest", "content_served"}  # served, /css/site.css differs too
    assert "/css/site.css: served bytes differ" in _detail(report, "content_served")
    assert verify.last_result(image)["ok"] is False


def test_a_manifest_edited_after_the_build_fails_against_its_label(good, variant):
    """The manifest changed, the label not: the image does not carry what its build wrote."""
    lines, files = good.manifest_files(label=False, left_out=(*good.manifest.left_out, "drafts/x.bak"))
    image = variant("manifest-tampered", lines, files)
    report = verify.run_site(good.catalog, good.site, image=image)
    assert _failing(report) == {"content_manifest"}, report.to_dict()
    detail = _detail(report, "content_manifest")
    assert f"{IMAGE_PATH} does not match its label io.imgforge.manifest-digest" in detail
    assert good.manifest.digest in detail  # what the label says
    same = variant("manifest-relabelled", *good.manifest_files(label=True, left_out=(*good.manifest.left_out, "y")))
    assert verify.run_site(good.catalog, good.site, image=same).ok  # the same edit with its label is an image as built


def test_an_image_of_another_site_fails_content_manifest(good, variant):
    lines, files = good.manifest_files(site="shop")
    report = verify.run_site(good.catalog, good.site, image=variant("other-site", lines, files))
    assert _failing(report) == {"content_manifest"}
    assert "the manifest is of site 'shop', not 'web'" in _detail(report, "content_manifest")


def test_config_without_tmp_paths_dies_on_read_only_root_and_is_reported_fast(good, variant):
    """nginx exits at once (mkdir on a read-only root): every check fails, none waits for a timeout."""
    conf = good.rendered("nginx.conf")
    broken = "\n".join(line for line in conf.splitlines() if "_temp_path /tmp/" not in line) + "\n"
    assert broken != conf
    image = variant("no-tmp-paths", [], {"/etc/nginx/nginx.conf": (broken, 0o644)})
    started = time.monotonic()
    report = verify.run_site(good.catalog, good.site, image=image)
    assert time.monotonic() - started < 8
    assert "Read-only file system" in _detail(report, "startup_logs")
    assert "exited" in _detail(report, "healthz")
    assert _failing(report) >= {"startup_logs", "healthz", "content_served", "listen_port", "arbitrary_uid", "stop"}
    assert {"image_config", "no_setuid"}.isdisjoint(_failing(report))


def test_image_without_find_is_scanned_from_its_export(good, variant, docker_client):
    """No `find` in the image (distroless-like): the setuid scan falls back to `docker export`.

    Every container the run creates, the export's included, carries this session's owner label
    (read from the engine's own create events, so one created without it cannot hide).
    """
    image = variant(
        "no-find-setuid",
        ["RUN cp /bin/true /usr/local/bin/helper && chmod 4755 /usr/local/bin/helper && rm /usr/bin/find"],
    )
    began = int(time.time()) - 1
    report = verify.run_site(good.catalog, good.site, image=image)
    assert _failing(report) == {"no_setuid"}, report.to_dict()
    assert "/usr/local/bin/helper" in _detail(report, "no_setuid")
    created = [
        e["Actor"]["Attributes"]
        for e in docker_client.events(
            since=began, until=int(time.time()) + 1, filters={"type": "container", "event": "create"}, decode=True
        )
    ]
    owner = os.environ["IMGFORGE_OWNER"]
    [run] = {a[RUN_LABEL] for a in created if a.get(OWNER_LABEL) == owner and a.get("image") == image}
    of_run = [a for a in created if a.get(RUN_LABEL) == run]
    # 4 scenarios, the export and the container the manifest and web root are read from.
    assert len(of_run) == 6, of_run
    assert all(a.get(OWNER_LABEL) == owner for a in of_run), of_run


def test_user_root_directive_is_judged_by_what_runs(good, variant):
    """`user root;` in nginx.conf is ignored by a non-root master: processes judges the real IDs."""
    image = variant(
        "user-root-directive",
        [],
        {
            "/etc/nginx/nginx.conf": (
                good.edited("nginx.conf", "worker_processes auto;", "user root;\nworker_processes auto;"),
                0o644,
            )
        },
    )
    report = verify.run_site(good.catalog, good.site, image=image)
    assert report.ok, report.failed
    assert f"all {good.site.uid}:{good.site.gid}" in _detail(report, "processes")
