"""Fixture site repos for the audit tests, written inline: the precedent's three states.

``ROOT_SITE`` is the root Alpine image as the owner's sites ship today; ``HALF_FIXED`` is the
sm-lickitung v0.0.4 shape (numeric USER, but an envsubst entrypoint writing into /etc/nginx
with gettext never installed); ``FIXED`` is what the hardening should end with: no findings.
"""

from __future__ import annotations

ROOT_NGINX_CONF = """
    user nginx;
    worker_processes auto;
    pid /var/run/nginx/nginx.pid;

    events {
        worker_connections 1024;
    }

    http {
        include /etc/nginx/mime.types;
        default_type application/octet-stream;
        gzip on;
        gzip_types text/css application/javascript;
        include /etc/nginx/http.d/*.conf;
    }
"""

ROOT_DEFAULT_CONF = """
    server {
        listen 80;
        listen [::]:80;
        server_name example.com;
        root /usr/share/nginx/html;
        index index.html;

        add_header X-Frame-Options "SAMEORIGIN";
        add_header Referrer-Policy "strict-origin-when-cross-origin";

        location ~* \\.(css|js|png|jpg|svg|woff2)$ {
            expires 1y;
            add_header Cache-Control "public, max-age=31536000, immutable";
        }

        location / {
            try_files $uri $uri/ /index.html;
        }
    }
"""

WEB_ROOT = {
    "www-data/index.html": "<!doctype html><title>Site</title><form action=/mail.php>"
    '<input type="password" name="pw"></form>\n',
    "www-data/css/site.css": "body { margin: 0 }\n",
    "www-data/mail.php": """
        <?php
        define('SMTP_HOST', 'smtp.example.com');
        define('SMTP_PASSWORD', 'hunter2-prod');
        mail($_POST['to'], 'hello', 'body');
    """,
    "www-data/Thumbs.db": b"\x00\x01junk",
    "www-data/design/hero.psd": b"8BPS\x00\x01",
}

ROOT_SITE = {
    "Dockerfile": """
        FROM alpine
        RUN apk add --no-cache nginx
        COPY nginx.conf /etc/nginx/nginx.conf
        COPY default.conf /etc/nginx/http.d/default.conf
        COPY www-data/ /usr/share/nginx/html/
        EXPOSE 80
        CMD ["nginx", "-g", "daemon off;"]
    """,
    "nginx.conf": ROOT_NGINX_CONF,
    "default.conf": ROOT_DEFAULT_CONF,
    **WEB_ROOT,
}

FIXED_NGINX_CONF = """
    worker_processes auto;
    pid /tmp/nginx.pid;

    events {
        worker_connections 1024;
    }

    http {
        client_body_temp_path /tmp/client_body;
        proxy_temp_path /tmp/proxy;
        fastcgi_temp_path /tmp/fastcgi;
        uwsgi_temp_path /tmp/uwsgi;
        scgi_temp_path /tmp/scgi;
        server_tokens off;
        include /etc/nginx/mime.types;
        default_type application/octet-stream;
        gzip on;
        include /tmp/nginx/*.conf;
    }
"""

TEMPLATE_CONF = """
    server {
        listen ${LISTEN_PORT};
        listen [::]:${LISTEN_PORT};
        root /usr/share/nginx/html;
        index index.html;
        location / {
            try_files $uri $uri/ =404;
        }
    }
"""

HALF_FIXED = {
    "Dockerfile": """
        FROM alpine:3.21
        RUN apk add --no-cache nginx && find / -xdev -type d -perm -0002 ! -path /tmp -exec chmod o-w {} +
        COPY nginx.conf /etc/nginx/nginx.conf
        COPY default.conf.template /etc/nginx/templates/default.conf.template
        COPY entrypoint.sh /entrypoint.sh
        COPY www-data/ /usr/share/nginx/html/
        ENV LISTEN_PORT=8080
        EXPOSE 8080
        USER 100:101
        STOPSIGNAL SIGQUIT
        ENTRYPOINT ["/entrypoint.sh"]
    """,
    "nginx.conf": FIXED_NGINX_CONF.replace("/tmp/nginx/*.conf", "/etc/nginx/http.d/*.conf"),
    "default.conf.template": TEMPLATE_CONF,
    "entrypoint.sh": """
        #!/bin/sh
        set -e
        envsubst '${LISTEN_PORT}' < /etc/nginx/templates/default.conf.template > /etc/nginx/http.d/default.conf
        exec nginx -g 'daemon off;'
    """,
    "www-data/index.html": "<!doctype html><title>Site</title>\n",
}

FIXED = {
    **HALF_FIXED,
    "Dockerfile": HALF_FIXED["Dockerfile"].replace("apk add --no-cache nginx", "apk add --no-cache nginx gettext"),
    "nginx.conf": FIXED_NGINX_CONF,
    "entrypoint.sh": """
        #!/bin/sh
        set -e
        OUT_DIR=/tmp/nginx
        mkdir -p "$OUT_DIR"
        envsubst '${LISTEN_PORT}' < /etc/nginx/templates/default.conf.template > "$OUT_DIR/default.conf"
        exec nginx -g 'daemon off;'
    """,
    "www-data/.well-known/security.txt": "Contact: mailto:security@example.com\n",
}


# -- GitOps fleet repos ---------------------------------------------------------------------------
# The shape of the owner's repo: a base per app and a production overlay that patches the real
# image (and, for the precedent fix, the pod securityContext) in.

OVERLAYS = "fluxcd/apps/overlays/production"

BASE_DEPLOYMENT = """
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: {app}
    spec:
      selector:
        matchLabels:
          app: {app}
      template:
        metadata:
          labels:
            app: {app}
        spec:
    {pod_extra}
          containers:
            - name: {app}
              image: PLACEHOLDER_IMAGE
              ports:
                - containerPort: 80
                  name: http
    {container_extra}
"""

HARDENED_POD = """
          securityContext:
            runAsNonRoot: true
            runAsUser: 10000
            runAsGroup: 10001
            fsGroup: 10001
            seccompProfile:
              type: RuntimeDefault
"""

HARDENED_CONTAINER = """
              securityContext:
                allowPrivilegeEscalation: false
                readOnlyRootFilesystem: true
                capabilities:
                  drop: [ALL]
              resources:
                requests: {cpu: 10m, memory: 16Mi}
                limits: {memory: 64Mi}
              volumeMounts:
                - name: tmp
                  mountPath: /tmp
          volumes:
            - name: tmp
              emptyDir: {sizeLimit: 16Mi}
"""

LSIO_CONTAINER = """
              env:
                - name: PUID
                  value: "1000"
                - name: PGID
                  value: "1000"
"""


def overlay_patch(app: str, image: str, pod_security: str = "") -> str:
    """The overlay's strategic-merge patch: the real image, and optionally a pod securityContext."""
    return (
        f"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {app}\nspec:\n  template:\n"
        f"    spec:\n{pod_security}      containers:\n        - name: {app}\n          image: {image}\n"
    )


def fleet_app(
    app: str,
    image: str,
    *,
    pod_extra: str = "",
    container_extra: str = "",
    pod_security_patch: str = "",
    base: str | None = None,
) -> dict[str, str]:
    """Files of one app (base + production overlay), as the fixture builder takes them."""
    base = base or app
    deployment = (
        BASE_DEPLOYMENT.replace("    {pod_extra}\n", pod_extra.lstrip("\n"))
        .replace("    {container_extra}\n", container_extra.lstrip("\n"))
        .replace("{app}", app)
    )
    return {
        f"fluxcd/apps/base/{app}/deployment.yaml": deployment,
        f"fluxcd/apps/base/{app}/kustomization.yaml": "resources:\n  - deployment.yaml\n",
        f"{OVERLAYS}/{app}/kustomization.yaml": "namespace: lost-woods\nresources:\n"
        f"  - ../../../base/{base}\npatches:\n"
        f"  - path: deployment-patch.yaml\n    target:\n      kind: Deployment\n      name: {app}\n",
        f"{OVERLAYS}/{app}/deployment-patch.yaml": overlay_patch(app, image, pod_security_patch),
    }


PRECEDENT_PATCH = "      securityContext:\n        runAsUser: 100\n        runAsGroup: 101\n"

FLEET = {
    **fleet_app(
        "hardened-site",
        "docker.io/prplanit/fairer-pages:v0.0.11",
        pod_extra=HARDENED_POD,
        container_extra=HARDENED_CONTAINER,
    ),
    **fleet_app("partial-site", "cr.pcfae.com/prplanit/sm-lickitung-oci:v0.0.5", pod_security_patch=PRECEDENT_PATCH),
    **fleet_app(
        "root-site",
        "cr.pcfae.com/prplanit/astralfocal.com:v0.0.2",
        pod_security_patch="      securityContext:\n        runAsUser: 0\n",
    ),
    **fleet_app("plain-site", "cr.pcfae.com/prplanit/sofmeright.com:v0.0.5"),
    **fleet_app("sonarr", "lscr.io/linuxserver/sonarr:4.0.14", container_extra=LSIO_CONTAINER),
    **fleet_app(
        "radarr",
        "lscr.io/linuxserver/radarr:5.21.1",
        container_extra=LSIO_CONTAINER,
        pod_security_patch=PRECEDENT_PATCH,
    ),
    **fleet_app("broken-site", "cr.pcfae.com/prplanit/broken:v1", base="does-not-exist"),
    f"{OVERLAYS}/podinfo/kustomization.yaml": "resources:\n  - helmrelease.yaml\n",
    f"{OVERLAYS}/podinfo/helmrelease.yaml": "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\n"
    "metadata:\n  name: podinfo\nspec:\n"
    "  chart:\n    spec:\n      chart: podinfo\n",
    f"{OVERLAYS}/zz-graveyard/old-site/kustomization.yaml": "resources:\n  - gone.yaml\n",
    f"{OVERLAYS}/kustomization.yaml": "resources:\n  - hardened-site\n  - partial-site\n",
}
