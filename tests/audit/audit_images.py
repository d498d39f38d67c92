"""Images with known faults for the image audit, built by the real engine FROM the local nginx base.

The three precedent shapes of the owner's fleet (sites.md): ``ROOT`` (root, ``user nginx;``,
port 80, the PHP mailer in the web root), ``ENVSUBST`` (sm-lickitung v0.0.4: numeric USER, but an
entrypoint running envsubst, never installed, into /etc/nginx/conf.d) and ``NAMED`` (``USER nginx``,
the web root chowned to it). ``FAULTS`` holds the rest of the contract's faults, each at its own
path, so one build proves many rules. Each image is a Dockerfile and its context files.
"""

from __future__ import annotations

import io
import tarfile
import textwrap
import uuid
from dataclasses import dataclass

from audit_fixture_repos import FIXED_NGINX_CONF, ROOT_DEFAULT_CONF, ROOT_NGINX_CONF, TEMPLATE_CONF, WEB_ROOT

OWNER = {"io.imgforge.owner": "p3-tests"}
RUN = uuid.uuid4().hex[:10]
STRIP_WORLD_WRITABLE = "find / -xdev -type d -perm -0002 ! -path /tmp -exec chmod o-w {} +"


@dataclass(frozen=True)
class Spec:
    name: str
    dockerfile: str
    files: dict[str, tuple[str | bytes, int]]  # context path -> (content, mode)


def _www(files: dict[str, str | bytes]) -> dict[str, tuple[str | bytes, int]]:
    return {rel: (text, 0o644) for rel, text in files.items()}


ROOT = Spec(
    "root-user-nginx",
    """
    FROM {base}
    RUN useradd --system --no-create-home --shell /usr/sbin/nologin nginx \\
     && rm -f /etc/nginx/sites-enabled/default \\
     && echo 'Package: nginx' > /var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages
    COPY nginx.conf /etc/nginx/nginx.conf
    COPY default.conf /etc/nginx/conf.d/default.conf
    COPY www-data/ /usr/share/nginx/html/
    EXPOSE 80
    CMD ["nginx", "-g", "daemon off;"]
    """,
    {
        "nginx.conf": (ROOT_NGINX_CONF.replace("/etc/nginx/http.d/", "/etc/nginx/conf.d/"), 0o644),
        "default.conf": (ROOT_DEFAULT_CONF, 0o644),
        **_www(WEB_ROOT),
    },
)

_FIXED_CONF = FIXED_NGINX_CONF.replace("/tmp/nginx/*.conf", "/etc/nginx/conf.d/*.conf")

ENVSUBST = Spec(
    "envsubst-into-etc",
    f"""
    FROM {{base}}
    RUN rm -f /etc/nginx/sites-enabled/default && {STRIP_WORLD_WRITABLE}
    COPY nginx.conf /etc/nginx/nginx.conf
    COPY default.conf.template /etc/nginx/templates/default.conf.template
    COPY entrypoint.sh /entrypoint.sh
    COPY www-data/ /usr/share/nginx/html/
    ENV LISTEN_PORT=8080
    EXPOSE 8080
    USER 100:101
    STOPSIGNAL SIGQUIT
    ENTRYPOINT ["/entrypoint.sh"]
    CMD ["nginx", "-g", "daemon off;"]
    """,
    {
        "nginx.conf": (_FIXED_CONF, 0o644),
        "default.conf.template": (TEMPLATE_CONF, 0o644),
        "entrypoint.sh": (
            """
            #!/bin/sh
            set -e
            envsubst '${LISTEN_PORT}' < /etc/nginx/templates/default.conf.template > /etc/nginx/conf.d/default.conf
            exec "$@"
            """,
            0o755,
        ),
        **_www({"www-data/index.html": "<!doctype html><title>Site</title>\n"}),
    },
)

NAMED = Spec(
    "user-nginx-by-name",
    f"""
    FROM {{base}}
    RUN useradd --system --no-create-home --shell /usr/sbin/nologin nginx \\
     && rm -f /etc/nginx/sites-enabled/default && {STRIP_WORLD_WRITABLE}
    COPY nginx.conf /etc/nginx/nginx.conf
    COPY --chown=nginx:nginx www-data/ /usr/share/nginx/html/
    EXPOSE 8080
    USER nginx
    STOPSIGNAL SIGQUIT
    CMD ["nginx", "-g", "daemon off;"]
    """,
    {
        "nginx.conf": (FIXED_NGINX_CONF, 0o644),
        **_www({"www-data/index.html": "<h1>hi</h1>\n", "www-data/css/site.css": "body { margin: 0 }\n"}),
    },
)

FAULTS_NGINX_CONF = (
    _FIXED_CONF.replace("server_tokens off;", "server_tokens build;")
    .replace("proxy_temp_path /tmp/proxy;", "proxy_temp_path /var/cache/nginx/proxy;")
    .replace(
        "default_type application/octet-stream;",
        "default_type application/octet-stream;\n    access_log /var/log/nginx/access.log;\n    error_log /dev/stderr;",
    )
)

FAULTS = Spec(
    "contract-faults",
    f"""
    FROM {{base}}
    RUN rm -f /etc/nginx/sites-enabled/default && {STRIP_WORLD_WRITABLE} \\
     && mkdir -p /srv/uploads/incoming /var/cache/nginx && chmod -R 777 /srv/uploads \\
     && cp /usr/bin/true /usr/local/bin/suid-helper && chmod 4755 /usr/local/bin/suid-helper \\
     && mkdir -p /root/.cache/pip/http && echo cached > /root/.cache/pip/http/blob \\
     && ln -sf /dev/stdout /var/log/nginx/linked.log
    COPY nginx.conf /etc/nginx/nginx.conf
    COPY site.conf /etc/nginx/conf.d/site.conf
    COPY www/ /srv/www/
    COPY start.sh /usr/local/bin/start.sh
    RUN install -d -o 0 -g 101 -m 2775 /srv/www/drop && install -o 100 -g 0 -m 644 /dev/null /srv/www/mine.html
    EXPOSE 8080
    STOPSIGNAL SIGTERM
    USER 100:101
    ENTRYPOINT ["/usr/local/bin/start.sh"]
    CMD ["nginx", "-g", "daemon off;"]
    """,
    {
        "nginx.conf": (FAULTS_NGINX_CONF, 0o644),
        "site.conf": (
            """
            server {
                listen 8080;
                root /srv/www;
                access_log /var/log/nginx/linked.log;
                location ~ /\\. {
                    return 404;
                }
            }
            """,
            0o644,
        ),
        "start.sh": (
            """
            #!/bin/bash
            CONF=/etc/nginx/conf.d
            sed -i "s/8080/${LISTEN_PORT:-8080}/" "$CONF/site.conf"
            mkdir -p /tmp/nginx 2>/dev/null
            echo started >> /var/log/start.log
            exec "$@"
            """,
            0o755,
        ),
        **_www(
            {
                "www/index.html": "<h1>faults</h1>\n",
                "www/.env": "API_KEY='sk_live_0123456789'\n",
                "www/.git/config": "[core]\n",
                "www/backup.sh": "#!/bin/sh\ntar czf /tmp/b.tgz /srv\n",
                "www/notes.txt~": "old\n",
                "www/.well-known/security.txt": "Contact: mailto:security@example.com\n",
            }
        ),
    },
)


def context_tar(spec: Spec, base: str) -> io.BytesIO:
    """The build context of ``spec`` as a tar, with a label that makes the image this run's alone."""
    dockerfile = textwrap.dedent(spec.dockerfile).lstrip("\n").replace("{base}", base)
    dockerfile += f"LABEL io.imgforge.p3-run={RUN}\n"
    files: dict[str, tuple[str | bytes, int]] = {"Dockerfile": (dockerfile, 0o644), **spec.files}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, (content, mode) in files.items():
            data = content if isinstance(content, bytes) else textwrap.dedent(content).lstrip("\n").encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


BROKEN_CONF = Spec(
    "unparsable-nginx-conf",
    "FROM {base}\nCOPY nginx.conf /etc/nginx/nginx.conf\n",
    {"nginx.conf": ("events {}\nhttp {\n    server {\n", 0o644)},
)
