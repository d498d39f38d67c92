"""``audit_repo`` against the rest of the hardening contract: server_tokens, log files, start-up
writes, STOPSIGNAL, served files the runtime user owns or may write, world-writable paths,
setuid files, package caches. Each rule trips on the smallest change to the clean FIXED repo,
and imgforge's own rendered build contexts trip none of them."""

from __future__ import annotations

import pytest
from audit_fixture_repos import FIXED, ROOT_SITE

from imgforge.audit import audit_repo


def rules(findings) -> list[str]:
    return sorted(f.rule for f in findings)


def _dockerfile(old: str, new: str) -> dict:
    assert old in FIXED["Dockerfile"]
    return {"Dockerfile": FIXED["Dockerfile"].replace(old, new)}


def _conf(old: str, new: str) -> dict:
    assert old in FIXED["nginx.conf"]
    return {"nginx.conf": FIXED["nginx.conf"].replace(old, new)}


def test_fixed_repo_is_clean(site_repo):
    assert audit_repo(site_repo(FIXED)) == []


# -- nginx --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "flagged"), [("on", True), ("build", True), ("off", False)])
def test_server_tokens_value(site_repo, value, flagged):
    found = audit_repo(site_repo(FIXED, _conf("server_tokens off;", f"server_tokens {value};")))
    assert [(f.rule, f.line) for f in found] == ([("IMG005", 14)] if flagged else [])


def test_server_tokens_default_is_on(site_repo):
    found = audit_repo(site_repo(FIXED, _conf("server_tokens off;", "")))
    assert [(f.rule, f.file, f.line) for f in found] == [("IMG005", "nginx.conf", 8)]
    assert "default (on)" in found[0].message


def test_server_tokens_off_in_every_server_is_enough(site_repo):
    template = FIXED["default.conf.template"].replace("index index.html;", "index index.html;\nserver_tokens off;")
    changes = {**_conf("server_tokens off;", ""), "default.conf.template": template}
    assert audit_repo(site_repo(FIXED, changes)) == []


@pytest.mark.parametrize(
    ("directive", "flagged"),
    [
        ("access_log /var/log/nginx/access.log;", True),
        ("error_log /var/log/nginx/error.log warn;", True),
        ("access_log /dev/stdout;", False),
        ("error_log stderr;", False),
        ("access_log off;", False),
        ("access_log /tmp/access.log;", False),
        ("access_log syslog:server=10.0.0.1;", False),
    ],
)
def test_log_files(site_repo, directive, flagged):
    found = audit_repo(site_repo(FIXED, _conf("server_tokens off;", f"server_tokens off;\n{directive}")))
    assert rules(found) == (["IMG006"] if flagged else [])


# -- start-up writes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "flagged"),
    [
        ("mkdir -p /var/run/nginx", True),
        ("cp /etc/nginx/templates/x.conf /etc/nginx/conf.d/x.conf", True),
        ("cp /etc/nginx/templates/x.conf /etc/nginx/conf.d/x.conf 2>/dev/null", True),
        ("echo started >> /var/log/start.log", True),
        ("ln -sf /dev/stdout /var/log/nginx/access.log", True),
        ("printf 'x' | tee /etc/nginx/conf.d/x.conf", True),
        ("mkdir -p /tmp/nginx/cache 2>/dev/null", False),
        ("cp /etc/nginx/templates/x.conf /tmp/nginx/x.conf", False),
        ("echo started >&2", False),
        ('rm -f "$OUT_DIR/old.conf"', False),
    ],
)
def test_start_up_writes(site_repo, line, flagged):
    script = FIXED["entrypoint.sh"].replace("exec nginx", f"{line}\nexec nginx")
    found = audit_repo(site_repo(FIXED, {"entrypoint.sh": script}))
    assert [(f.rule, f.line) for f in found] == ([("IMG021", 6)] if flagged else [])


def test_here_document_body_is_not_run(site_repo):
    script = FIXED["entrypoint.sh"].replace(
        "exec nginx", "cat > /tmp/nginx/x.conf <<EOF\nrm -rf /etc/nginx\n> /etc/passwd\nEOF\nexec nginx"
    )
    assert audit_repo(site_repo(FIXED, {"entrypoint.sh": script})) == []


# -- metadata -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("signal", "flagged"), [("SIGTERM", True), ("SIGKILL", True), ("QUIT", False), ("3", False)])
def test_stop_signal_must_be_sigquit(site_repo, signal, flagged):
    found = audit_repo(site_repo(FIXED, _dockerfile("STOPSIGNAL SIGQUIT", f"STOPSIGNAL {signal}")))
    assert [(f.rule, f.line) for f in found] == ([("IMG040", 10)] if flagged else [])


# -- served files and the runtime user ------------------------------------------------------------


@pytest.mark.parametrize(
    ("copy", "flagged"),
    [
        ("COPY --chown=100:101 www-data/ /usr/share/nginx/html/", True),
        ("COPY --chown=100 www-data/ /usr/share/nginx/html/", True),
        ("COPY --chmod=777 www-data/ /usr/share/nginx/html/", True),
        ("COPY --chown=0:0 www-data/ /usr/share/nginx/html/", False),
        ("COPY --chmod=644 www-data/ /usr/share/nginx/html/", False),
    ],
)
def test_copy_into_web_root(site_repo, copy, flagged):
    found = audit_repo(site_repo(FIXED, _dockerfile("COPY www-data/ /usr/share/nginx/html/", copy)))
    assert [(f.rule, f.line) for f in found] == ([("IMG035", 6)] if flagged else [])


@pytest.mark.parametrize(
    ("run", "rule"),
    [
        ("RUN chown -R 100:101 /usr/share/nginx/html", "IMG035"),
        ("RUN chown -R 100:101 /usr/share/nginx", "IMG035"),  # -R on a folder above the web root
        ("RUN chmod -R o+w /usr/share/nginx/html", "IMG035"),
        ("RUN chown -R 100:101 /var/cache/nginx", None),  # not served
        ("RUN chown 100:101 /usr/share/nginx", None),  # not recursive: the web root stays root's
        ("RUN chmod -R a+r /usr/share/nginx/html", None),
    ],
)
def test_run_lines_on_the_web_root(site_repo, run, rule):
    found = audit_repo(site_repo(FIXED, _dockerfile("EXPOSE 8080", f"{run}\nEXPOSE 8080")))
    assert rules(found) == ([rule] if rule else [])


def test_web_root_owned_by_a_named_user(site_repo):
    changes = _dockerfile(
        "COPY www-data/ /usr/share/nginx/html/", "COPY --chown=nginx:nginx www-data/ /usr/share/nginx/html/"
    )
    changes["Dockerfile"] = changes["Dockerfile"].replace("USER 100:101", "USER nginx")
    assert rules(audit_repo(site_repo(FIXED, changes))) == ["IMG012", "IMG035"]


# -- file system ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("run", "rule"),
    [
        ("RUN mkdir -p /var/cache/nginx && chmod 777 /var/cache/nginx", "IMG050"),
        ("RUN chmod -R a+rwX /srv/data", "IMG050"),
        ("RUN mkdir -m 1777 /srv/uploads", "IMG050"),
        ("RUN chmod 4755 /usr/local/bin/helper", "IMG051"),
        ("RUN chmod u+s,g+s /usr/local/bin/helper", "IMG051"),
        ("RUN chmod 1777 /tmp/cache", None),
        ("RUN chmod 755 /usr/local/bin/helper", None),
        ("RUN chmod go-w /srv/data", None),
    ],
)
def test_run_lines_on_the_file_system(site_repo, run, rule):
    found = audit_repo(site_repo(FIXED, _dockerfile("EXPOSE 8080", f"{run}\nEXPOSE 8080")))
    assert rules(found) == ([rule] if rule else [])


def test_copy_chmod_setuid(site_repo):
    found = audit_repo(site_repo(FIXED, _dockerfile("COPY entrypoint.sh", "COPY --chmod=4755 entrypoint.sh")))
    assert rules(found) == ["IMG051"]


def test_world_writable_folders_of_the_base(site_repo):
    strip = " && find / -xdev -type d -perm -0002 ! -path /tmp -exec chmod o-w {} +"
    found = audit_repo(site_repo(FIXED, _dockerfile(strip, "")))
    assert [(f.rule, f.line) for f in found] == [("IMG050", 1)]
    assert "/var/tmp" in found[0].message


@pytest.mark.parametrize(
    ("strip", "flagged"),
    [
        ("", True),
        ("RUN find / -xdev -type f -perm /6000 -exec chmod a-s {} +", False),
        ("RUN chmod u-s /usr/bin/su /usr/bin/passwd /usr/bin/mount /usr/bin/umount /usr/bin/chsh", False),
        ("RUN chmod u-s /usr/bin/su", True),  # the others stay
    ],
)
def test_setuid_files_of_a_debian_base(site_repo, strip, flagged):
    dockerfile = FIXED["Dockerfile"].replace("FROM alpine:3.21", "FROM debian:bookworm-slim")
    dockerfile = dockerfile.replace(
        "RUN apk add --no-cache nginx gettext",
        "RUN apt-get install -y nginx gettext-base && rm -rf /var/lib/apt/lists/* && chmod o-w /var/tmp /run/lock",
    )
    dockerfile = dockerfile.replace("EXPOSE 8080", f"{strip}\nEXPOSE 8080")
    found = audit_repo(site_repo(FIXED, {"Dockerfile": dockerfile}))
    assert rules(found) == (["IMG051"] if flagged else [])


@pytest.mark.parametrize(
    ("install", "flagged"),
    [
        ("apt-get update && apt-get install -y nginx gettext-base", True),
        ("apt-get update && apt-get install -y nginx gettext-base && rm -rf /var/lib/apt/lists/*", False),
        ("apk add nginx gettext", True),
        ("apk add --no-cache nginx gettext", False),
        ("apk add nginx gettext && pip install j2cli", True),
        ("apk add --no-cache nginx gettext && pip install --no-cache-dir j2cli", False),
        ("dnf install -y nginx gettext", True),
        ("dnf install -y nginx gettext && dnf clean all", False),
    ],
)
def test_package_caches(site_repo, install, flagged):
    found = audit_repo(site_repo(FIXED, _dockerfile("apk add --no-cache nginx gettext", install)))
    assert "IMG052" in rules(found) if flagged else "IMG052" not in rules(found)


# -- imgforge's own images ------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["alpine", "debian", "prebuilt"])
def test_rendered_contexts_are_clean(make_catalog, tmp_path, profile):
    from imgforge import config, render

    catalog = config.load_catalog(make_catalog(sites={"web": {"profile": profile, "base_image": None}}))
    _, out = render.render_site(catalog, catalog.site("web"), tmp_path / "context")
    assert [f"{f.location()} {f.rule} {f.message}" for f in audit_repo(out)] == []


def test_root_site_reports_the_new_rules_too(site_repo):
    found = {(f.rule, f.file) for f in audit_repo(site_repo(ROOT_SITE))}
    assert {("IMG005", "nginx.conf"), ("IMG050", "Dockerfile")} <= found
