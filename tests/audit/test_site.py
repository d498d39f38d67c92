"""``audit_repo``: each rule fires on the smallest change that breaks it, and not on the fixed repo."""

from __future__ import annotations

import pytest
from audit_fixture_repos import FIXED, HALF_FIXED, ROOT_SITE, WEB_ROOT

from imgforge.audit import RULES, AuditUnreadable, audit_repo
from imgforge.audit.findings import ERROR, has_errors


def rules(findings) -> list[str]:
    return sorted(f.rule for f in findings)


def test_fixed_repo_is_clean(site_repo):
    assert audit_repo(site_repo(FIXED)) == []


def test_root_alpine_site_reports_every_root_habit(site_repo):
    found = audit_repo(site_repo(ROOT_SITE))
    by_rule = {(f.rule, f.file, f.line) for f in found}
    assert ("IMG001", "nginx.conf", 1) in by_rule  # user nginx;
    assert ("IMG002", "nginx.conf", 3) in by_rule  # pid /var/run/nginx/nginx.pid
    assert ("IMG003", "nginx.conf", None) in by_rule  # no temp paths at all
    assert ("IMG004", "default.conf", 2) in by_rule
    assert ("IMG004", "default.conf", 3) in by_rule
    assert ("IMG010", "Dockerfile", None) in by_rule
    assert ("IMG013", "Dockerfile", 6) in by_rule
    assert ("IMG030", "www-data/mail.php", None) in by_rule
    assert ("IMG032", "www-data/mail.php", 3) in by_rule  # the SMTP password constant
    assert ("IMG033", "www-data/Thumbs.db", None) in by_rule
    assert ("IMG033", "www-data/design/hero.psd", None) in by_rule
    assert ("IMG040", "Dockerfile", None) in by_rule
    assert ("IMG041", "Dockerfile", 1) in by_rule
    assert has_errors(found)
    # the SMTP host constant and the HTML password field are not credentials
    assert [f.line for f in found if f.rule == "IMG032"] == [3]
    assert "SMTP_PASSWORD" in next(f.message for f in found if f.rule == "IMG032")


def test_half_fixed_site_reports_the_v004_bug(site_repo):
    found = audit_repo(site_repo(HALF_FIXED))
    assert [(f.rule, f.file, f.line) for f in found] == [("IMG020", "entrypoint.sh", 3), ("IMG021", "entrypoint.sh", 3)]
    assert "gettext" in found[0].message
    assert "/etc/nginx/http.d/default.conf" in found[1].message


def test_every_rule_has_a_severity_and_title():
    assert all(r.severity in ("error", "warning", "info") and r.title for r in RULES.values())
    assert len({r.id for r in RULES.values()}) == len(RULES)


# -- nginx rules --------------------------------------------------------------------------------


def test_user_directive(site_repo):
    conf = "user nginx nginx;\n" + FIXED["nginx.conf"].lstrip("\n")
    found = audit_repo(site_repo(FIXED, {"nginx.conf": conf}))
    assert [(f.rule, f.line) for f in found] == [("IMG001", 1)]


@pytest.mark.parametrize(("pid", "expected"), [("/var/run/nginx.pid", ["IMG002"]), ("/tmp/nginx.pid", [])])
def test_pid_outside_tmp(site_repo, pid, expected):
    conf = FIXED["nginx.conf"].replace("/tmp/nginx.pid", pid)
    assert rules(audit_repo(site_repo(FIXED, {"nginx.conf": conf}))) == expected


def test_missing_pid_in_main_config(site_repo):
    conf = FIXED["nginx.conf"].replace("pid /tmp/nginx.pid;", "")
    found = audit_repo(site_repo(FIXED, {"nginx.conf": conf}))
    assert [(f.rule, f.line) for f in found] == [("IMG002", None)]


def test_temp_path_outside_tmp(site_repo):
    conf = FIXED["nginx.conf"].replace("proxy_temp_path /tmp/proxy", "proxy_temp_path /var/cache/nginx/proxy")
    found = audit_repo(site_repo(FIXED, {"nginx.conf": conf}))
    assert [(f.rule, f.line) for f in found] == [("IMG003", 10)]


def test_missing_temp_paths_are_named(site_repo):
    conf = FIXED["nginx.conf"].replace("uwsgi_temp_path /tmp/uwsgi;", "").replace("scgi_temp_path /tmp/scgi;", "")
    found = audit_repo(site_repo(FIXED, {"nginx.conf": conf}))
    assert rules(found) == ["IMG003"]
    assert "uwsgi_temp_path, scgi_temp_path" in found[0].message
    assert "proxy" not in found[0].message


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("80", ["IMG004"]),
        ("0.0.0.0:443 ssl", ["IMG004"]),
        ("[::]:80", ["IMG004"]),
        ("8080", []),
        ("127.0.0.1:8080", []),
        ("unix:/tmp/nginx.sock", []),
        ("${LISTEN_PORT}", []),
    ],
)
def test_listen_below_1024(site_repo, listen, expected):
    conf = FIXED["default.conf.template"].replace("listen ${LISTEN_PORT};", f"listen {listen};")
    assert rules(audit_repo(site_repo(FIXED, {"default.conf.template": conf}))) == expected


def test_unparseable_nginx_config_is_unreadable(site_repo):
    repo = site_repo(FIXED, {"nginx.conf": "events {\n  worker_connections 1024;\n"})
    with pytest.raises(AuditUnreadable, match=r"^nginx\.conf.*cannot parse nginx config") as e:
        audit_repo(repo)
    assert e.value.exit_code == 2


def test_unrelated_conf_files_are_ignored(site_repo):
    repo = site_repo(FIXED, {"supervisord.conf": "[program:x]\ncommand=/bin/true\n"})
    assert audit_repo(repo) == []


# -- Dockerfile rules ---------------------------------------------------------------------------


def _dockerfile(old: str, new: str) -> dict:
    assert old in FIXED["Dockerfile"]
    return {"Dockerfile": FIXED["Dockerfile"].replace(old, new)}


def test_no_user(site_repo):
    found = audit_repo(site_repo(FIXED, _dockerfile("USER 100:101\n", "")))
    assert [(f.rule, f.severity) for f in found] == [("IMG010", ERROR)]


def test_no_user_is_fine_on_a_non_root_base(site_repo):
    changes = _dockerfile("USER 100:101\n", "")
    changes["Dockerfile"] = changes["Dockerfile"].replace(
        "FROM alpine:3.21", "FROM nginxinc/nginx-unprivileged:1.27-alpine"
    )
    assert audit_repo(site_repo(FIXED, changes)) == []  # its own ENTRYPOINT replaces the base's envsubst step


@pytest.mark.parametrize(
    ("user", "rule"),
    [("root", "IMG011"), ("0:0", "IMG011"), ("nginx", "IMG012"), ("nginx:nginx", "IMG012"), ("${APP_UID}:101", None)],
)
def test_user_values(site_repo, user, rule):
    changes = _dockerfile("USER 100:101", f"ARG APP_UID=10000\nUSER {user}")
    found = audit_repo(site_repo(FIXED, changes))
    assert rules(found) == ([rule] if rule else [])
    if rule:
        assert found[0].line == 10


def test_last_user_wins(site_repo):
    changes = _dockerfile("USER 100:101", "USER 100:101\nRUN true\nUSER root")
    assert rules(audit_repo(site_repo(FIXED, changes))) == ["IMG011"]


def test_expose_below_1024(site_repo):
    found = audit_repo(site_repo(FIXED, _dockerfile("EXPOSE 8080", "EXPOSE 8080 443/tcp")))
    assert [(f.rule, f.line) for f in found] == [("IMG013", 8)]


def test_missing_stopsignal(site_repo):
    assert rules(audit_repo(site_repo(FIXED, _dockerfile("STOPSIGNAL SIGQUIT\n", "")))) == ["IMG040"]


def test_stopsignal_inherited_from_official_nginx(site_repo):
    changes = _dockerfile("STOPSIGNAL SIGQUIT\n", "")
    changes["Dockerfile"] = changes["Dockerfile"].replace("FROM alpine:3.21", "FROM nginx:1.27-alpine")
    assert "IMG040" not in rules(audit_repo(site_repo(FIXED, changes)))


@pytest.mark.parametrize(
    ("base", "flagged"),
    [
        ("alpine", True),
        ("alpine:latest", True),
        ("cr.example.com:5000/base/alpine", True),
        ("alpine:3.21", False),
        ("cr.example.com:5000/base/alpine:3.21", False),
        ("alpine@sha256:" + "a" * 64, False),
    ],
)
def test_unpinned_base(site_repo, base, flagged):
    found = audit_repo(site_repo(FIXED, _dockerfile("FROM alpine:3.21", f"FROM {base}")))
    assert rules(found) == (["IMG041"] if flagged else [])


def test_unpinned_base_through_arg_and_stages(site_repo):
    dockerfile = (
        "ARG BASE=alpine\nFROM ${BASE} AS runtime\nRUN apk add --no-cache nginx gettext && chmod o-w /var/tmp\n"
        "FROM runtime\n" + FIXED["Dockerfile"].lstrip().split("\n", 2)[2]
    )
    found = audit_repo(site_repo(FIXED, {"Dockerfile": dockerfile}))
    assert [(f.rule, f.line) for f in found] == [("IMG041", 2)]


def test_missing_dockerfile_and_nginx_is_unreadable(site_repo):
    with pytest.raises(AuditUnreadable, match="no Dockerfile and no nginx config"):
        audit_repo(site_repo({"README.md": "hi\n"}))


def test_path_that_is_not_a_folder(tmp_path):
    with pytest.raises(AuditUnreadable, match="no such folder"):
        audit_repo(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(AuditUnreadable, match="not a folder"):
        audit_repo(tmp_path / "file")


# -- runtime template steps ---------------------------------------------------------------------


def test_envsubst_without_gettext(site_repo):
    changes = _dockerfile("nginx gettext", "nginx")
    assert [(f.rule, f.line) for f in audit_repo(site_repo(FIXED, changes))] == [("IMG020", 5)]


@pytest.mark.parametrize(
    "install",
    [
        "apt-get install -y --no-install-recommends nginx-light gettext-base && rm -rf /var/lib/apt/lists/*",
        "apk add --no-cache nginx gettext-envsubst",
    ],
)
def test_envsubst_from_other_packages(site_repo, install):
    changes = _dockerfile("apk add --no-cache nginx gettext", install)
    assert audit_repo(site_repo(FIXED, changes)) == []


def test_envsubst_copied_from_a_build_stage(site_repo):
    changes = _dockerfile(
        "RUN apk add --no-cache nginx gettext",
        "COPY --from=tools /usr/bin/envsubst /usr/local/bin/envsubst\nRUN apk add --no-cache nginx",
    )
    assert audit_repo(site_repo(FIXED, changes)) == []


def test_template_written_through_a_variable_outside_tmp(site_repo):
    script = FIXED["entrypoint.sh"].replace("OUT_DIR=/tmp/nginx", "OUT_DIR=/etc/nginx/conf.d")
    found = audit_repo(site_repo(FIXED, {"entrypoint.sh": script}))
    assert [(f.rule, f.line) for f in found] == [("IMG021", 4), ("IMG021", 5)]
    assert found[0].message.startswith("mkdir writes /etc/nginx/conf.d at start-up")
    assert "/etc/nginx/conf.d/default.conf" in found[1].message


def test_sed_in_place_at_start_up(site_repo):
    script = FIXED["entrypoint.sh"].replace(
        "exec nginx", 'sed -i "s/8080/$LISTEN_PORT/" /etc/nginx/nginx.conf\nexec nginx'
    )
    found = audit_repo(site_repo(FIXED, {"entrypoint.sh": script}))
    assert [(f.rule, f.line) for f in found] == [("IMG021", 6)]


def test_inline_shell_cmd_is_a_runtime_step(site_repo):
    changes = _dockerfile(
        'ENTRYPOINT ["/entrypoint.sh"]',
        "CMD envsubst < /etc/nginx/templates/default.conf.template > /etc/nginx/conf.d/x.conf && nginx",
    )
    assert [(f.rule, f.line) for f in audit_repo(site_repo(FIXED, changes))] == [("IMG021", 11)]


def test_official_nginx_template_dir_renders_into_etc(site_repo):
    dockerfile = (
        "FROM nginx:1.27-alpine\nCOPY default.conf.template /etc/nginx/templates/default.conf.template\n"
        "COPY www-data/ /usr/share/nginx/html/\nUSER 101\n"
        "RUN find / -xdev -type d -perm -0002 ! -path /tmp -exec chmod o-w {} +\n"
    )
    found = audit_repo(site_repo(FIXED, {"Dockerfile": dockerfile, "entrypoint.sh": None}))
    assert [(f.rule, f.line) for f in found] == [("IMG021", 2)]
    ok = dockerfile + "ENV NGINX_ENVSUBST_OUTPUT_DIR=/tmp/conf.d\n"
    assert audit_repo(site_repo(FIXED, {"Dockerfile": ok, "entrypoint.sh": None})) == []


def test_build_time_envsubst_is_not_a_runtime_step(site_repo):
    changes = _dockerfile(
        "RUN apk add --no-cache nginx gettext", "RUN apk add --no-cache nginx && envsubst < a > /etc/nginx/b.conf"
    )
    # the entrypoint still needs gettext, but the RUN line itself is not reported
    assert [(f.rule, f.file) for f in audit_repo(site_repo(FIXED, changes))] == [("IMG020", "entrypoint.sh")]


# -- web root -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("contact.php", "IMG030"),
        ("cgi-bin/form.pl", "IMG030"),
        (".env", "IMG031"),
        ("backup/site.key", "IMG031"),
        ("id_rsa", "IMG031"),
        (".htpasswd", "IMG031"),
        ("Thumbs.db", "IMG033"),
        ("art/logo.psd", "IMG033"),
        (".DS_Store", "IMG033"),
        ("index.html~", "IMG033"),
        (".vscode/settings.json", "IMG033"),
    ],
)
def test_web_root_files(site_repo, name, rule):
    found = audit_repo(site_repo(FIXED, {f"www-data/{name}": "x\n"}))
    first = name.split("/")[0] if name.startswith(".vscode") else name
    assert [(f.rule, f.file) for f in found] == [(rule, f"www-data/{first}")]


def test_git_folder_in_web_root(site_repo):
    found = audit_repo(site_repo(FIXED, {"www-data/.git/config": "[core]\n", "www-data/.git/HEAD": "ref\n"}))
    assert [(f.rule, f.file) for f in found] == [("IMG031", "www-data/.git")]


def test_credentials_in_served_files(site_repo):
    found = audit_repo(site_repo(FIXED, {"www-data/js/config.js": "const cfg = { apiKey: 'sk_live_abcdef' };\n"}))
    assert [(f.rule, f.file, f.line) for f in found] == [("IMG032", "www-data/js/config.js", 1)]


def test_dockerignore_keeps_files_out_of_the_image(site_repo):
    repo = site_repo(
        FIXED,
        {
            **{k: v for k, v in WEB_ROOT.items() if k != "www-data/index.html"},
            ".dockerignore": "**/*.php\n**/Thumbs.db\n*.psd\nwww-data/design\n",
        },
    )
    assert audit_repo(repo) == []


def test_web_root_follows_the_nginx_root_and_copy(site_repo):
    conf = FIXED["default.conf.template"].replace("/usr/share/nginx/html", "/srv/site")
    changes = {
        "default.conf.template": conf,
        "public/leak.php": "<?php\n",
        **_dockerfile("COPY www-data/ /usr/share/nginx/html/", "COPY public /srv/site"),
    }
    found = audit_repo(site_repo(FIXED, changes))
    assert [(f.rule, f.file) for f in found] == [("IMG030", "public/leak.php")]
    assert "/srv/site/leak.php" in found[0].message


def test_copy_of_whole_repo_serves_everything(site_repo):
    changes = _dockerfile("COPY www-data/ /usr/share/nginx/html/", "COPY . /usr/share/nginx/html/")
    found = audit_repo(site_repo(FIXED, changes))
    assert ("IMG030", "entrypoint.sh") in {(f.rule, f.file) for f in found}


def test_web_root_not_found(site_repo):
    changes = {
        "www-data/index.html": None,
        "www-data/.well-known/security.txt": None,
        **_dockerfile("COPY www-data/ /usr/share/nginx/html/\n", ""),
    }
    found = audit_repo(site_repo(FIXED, changes))
    assert [(f.rule, f.severity) for f in found] == [("IMG034", "info")]


def test_nginx_only_repo_uses_conventional_web_root(site_repo):
    repo = site_repo({"nginx/site.conf": ROOT_SITE["default.conf"], "public/x.php": "<?php\n"})
    assert rules(audit_repo(repo)) == ["IMG004", "IMG004", "IMG005", "IMG030"]


def test_files_nginx_refuses_still_ship_in_the_image(site_repo):
    conf = FIXED["default.conf.template"].replace(
        "location / {", "location ~* \\.(?:php|env)$ {\n return 404;\n}\nlocation / {"
    )
    found = audit_repo(
        site_repo(FIXED, {"default.conf.template": conf, "www-data/a.php": "<?php\n", "www-data/b.pl": "1;\n"})
    )
    messages = {f.file: f.message for f in found}
    assert "nginx refuses to serve it" in messages["www-data/a.php"]
    assert "served as plain text" in messages["www-data/b.pl"]


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"Dockerfile": "# no stages\nRUN true\n"}, r"^Dockerfile: no FROM instruction"),
        ({"Dockerfile": "FROM --platform=linux/amd64\n"}, r"^Dockerfile:1: FROM without an image"),
    ],
)
def test_unreadable_inputs_name_the_file(site_repo, changes, match):
    with pytest.raises(AuditUnreadable, match=match):
        audit_repo(site_repo(FIXED, changes))


def test_odd_copy_sources_and_quotes_do_not_crash(site_repo):
    dockerfile = FIXED["Dockerfile"].replace("COPY entrypoint.sh", "COPY ../outside.txt /x\nCOPY ./entrypoint.sh")
    script = FIXED["entrypoint.sh"].replace("exec nginx", "sed -i 's/a/b /tmp/x.conf\nexec nginx")
    assert audit_repo(site_repo(FIXED, {"Dockerfile": dockerfile, "entrypoint.sh": script})) == []


def test_only_shell_scripts_are_start_up_steps(site_repo):
    # CMD names the nginx config, which mentions envsubst, but nginx.conf is not a script.
    conf = "env TEMPLATE_CMD=envsubst>/etc/nginx/x.conf;\n" + FIXED["nginx.conf"].lstrip("\n")
    changes = {
        "nginx.conf": conf,
        **_dockerfile(
            'ENTRYPOINT ["/entrypoint.sh"]',
            'ENTRYPOINT ["/entrypoint.sh"]\nCMD ["nginx", "-c", "/etc/nginx/nginx.conf"]',
        ),
    }
    assert audit_repo(site_repo(FIXED, changes)) == []
