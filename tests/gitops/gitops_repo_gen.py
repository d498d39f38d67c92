"""Generator of GitOps fixture repos shaped like the real one (see gitops-shape.md).

Each app is written in one of a few *shapes*, one per way a real repo may carry the image:

- ``patch``: the real repo's shape: base Deployment with ``PLACEHOLDER_IMAGE`` and
  ``containerPort: 80``; the overlay's ``deployment-patch.yaml`` holds the image; a JSON6902
  Service patch, an ingress annotation patch and an HTTPRoute; a SOPS-encrypted Secret.
- ``images``: the tag lives in the overlay kustomization's ``images:`` (newName/newTag) behind a
  Flux ``$imagepolicy`` marker; the overlay patch only adds labels.
- ``base``: the real image (with a Flux marker) is in the base Deployment; no overlay patch.
- ``trap``: the overlay patch repeats ``containerPort: 80`` and the base has a numeric liveness
  probe port and a named readiness probe port (the duplicate-port trap and the probe rule).
- ``external``: the base lives outside the repo (not editable): the port needs a JSON6902 patch.
- ``twin``: two containers run the same image (ambiguous).

Used by tests/gitops and by bench/bench_gitops.py (which adds thousands of filler files).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

OVERLAY_ROOT = "fluxcd/apps/overlays/production"
BASE_ROOT = "fluxcd/apps/base"
REGISTRY = "cr.pcfae.com/prplanit"
NAMESPACE = "lost-woods"

YAMLLINT = """\
extends: default
rules:
  document-start: disable
  line-length:
    max: 200
  indentation:
    spaces: 2
    indent-sequences: true
  comments:
    min-spaces-from-content: 1
  truthy:
    check-keys: false
"""


def image_of(app: str) -> str:
    return f"{REGISTRY}/{app.removesuffix('-site')}.com"


def _container(app: str, image: str, *, probes: bool = False, extra: str = "") -> str:
    probe = (
        """\
          livenessProbe:
            httpGet:
              path: /
              port: 80
          readinessProbe:
            tcpSocket:
              port: http
"""
        if probes
        else ""
    )
    return f"""\
        - name: {app}{extra}
          image: {image}
          ports:
            - containerPort: 80
              name: http
{probe}          resources:
            requests:
              cpu: 10m
              memory: 16Mi
            limits:
              memory: 64Mi
"""


def base_files(app: str, image: str = "PLACEHOLDER_IMAGE", *, probes: bool = False, twin: bool = False) -> dict:
    containers = _container(app, image, probes=probes)
    if twin:
        containers += _container(app, image, extra="-worker")
    return {
        "kustomization.yaml": """\
            apiVersion: kustomize.config.k8s.io/v1beta1
            kind: Kustomization
            resources:
              - deployment.yaml
              - service.yaml
              - serviceaccount.yaml
            """,
        "deployment.yaml": f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {app}
  labels:
    app.kubernetes.io/name: {app}
spec:
  replicas: 1
  selector:
    matchLabels:
      app.kubernetes.io/name: {app}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: {app}
    spec:
      serviceAccountName: {app}
      containers:
{containers}""",
        "service.yaml": f"""\
            apiVersion: v1
            kind: Service
            metadata:
              name: {app}
            spec:
              selector:
                app.kubernetes.io/name: {app}
              ports:
                - name: http
                  port: 80
                  targetPort: http  # named: survives the container port move
            """,
        "serviceaccount.yaml": f"""\
            apiVersion: v1
            kind: ServiceAccount
            metadata:
              name: {app}
            """,
    }


def overlay_files(app: str, shape: str, tag: str, service_port: int, base_ref: str) -> dict:
    image = image_of(app)
    patches = [
        f"""\
              - path: service-patch.yaml
                target:
                  kind: Service
                  name: {app}
              - path: service-{app}-ingress-patch.yaml
                target: {{kind: Service, name: {app}}}
"""
    ]
    files = {
        "service-patch.yaml": f"""\
            - op: replace
              path: /spec/ports/0/port
              value: {service_port}
            """,
        f"service-{app}-ingress-patch.yaml": """\
            - op: add
              path: /metadata/annotations
              value:
                policy.prplanit.com/exposed: "true"
            """,
        "httproute.yaml": f"""\
            apiVersion: gateway.networking.k8s.io/v1
            kind: HTTPRoute
            metadata:
              name: {app}
            spec:
              parentRefs:
                - name: internal-gateway
                  namespace: gateway
              hostnames:
                - "{app.removesuffix("-site")}.com"
              rules:
                - backendRefs:
                    - name: {app}
                      port: {service_port}
            """,
        "secret.enc.yaml": f"""\
            apiVersion: v1
            kind: Secret
            metadata:
              name: {app}-env
            type: Opaque
            stringData:
              SMTP_PASSWORD: ENC[AES256_GCM,data:bm90IHJlYWw=,iv:aXY=,tag:dGFn,type:str]
            sops:
              age:
                - recipient: age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq
                  enc: |
                    -----BEGIN AGE ENCRYPTED FILE-----
                    bm90IGEgcmVhbCBrZXk=
                    -----END AGE ENCRYPTED FILE-----
              lastmodified: "2026-01-01T00:00:00Z"
              mac: ENC[AES256_GCM,data:bWFj,iv:aXY=,tag:dGFn,type:str]
              version: 3.9.0
            """,
    }
    labels = """\
            apiVersion: apps/v1
            kind: Deployment
            metadata:
              name: {app}
            spec:
              template:
                metadata:
                  labels:
                    policy.prplanit.com/ingress: "true"
                spec:
                  imagePullSecrets:
                    - name: cr-pcfae-admin-pull-secret
            """.replace("{app}", app).rstrip(" ")
    images = ""
    if shape in ("patch", "trap", "twin"):
        ports = (
            """\
                      ports:
                        - containerPort: 80
                          name: http
            """
            if shape == "trap"
            else ""
        )
        files["deployment-patch.yaml"] = (
            labels
            + f"""\
                  containers:
                    # the real image; the base only has a placeholder
                    - name: {app}
                      image: {image}:{tag}
            """.rstrip(" ")
            + ports
        )
    elif shape in ("images", "external"):
        files["deployment-patch.yaml"] = labels
        marker = f'  # {{"$imagepolicy": "flux-system:{app}:tag"}}' if shape == "images" else ""
        images = f"""\
            images:
              - name: PLACEHOLDER_IMAGE
                newName: {image}
                newTag: {tag}{marker}
            """
    if "deployment-patch.yaml" in files:
        patches.insert(
            0,
            f"""\
              - path: deployment-patch.yaml
                target:
                  kind: Deployment
                  name: {app}
""",
        )
    files["kustomization.yaml"] = (
        f"""\
            apiVersion: kustomize.config.k8s.io/v1beta1
            kind: Kustomization
            namespace: {NAMESPACE}
            # {app}: served by nginx; Service port {service_port}
            resources:
              - {base_ref}
              - httproute.yaml
              - secret.enc.yaml
            patches:
"""
        + "".join(patches)
        + images
    )
    return files


def write_app(
    repo: Path, app: str, shape: str, tag: str = "v0.0.2", service_port: int = 4020, external_root: Path | None = None
) -> None:
    """Write one app's base and production overlay into ``repo`` in the given shape."""
    base_image = f"{image_of(app)}:{tag}" if shape in ("base", "twin") else "PLACEHOLDER_IMAGE"
    files = base_files(app, base_image, probes=shape == "trap", twin=shape == "twin")
    if shape == "base":  # a Flux marker on the image line itself
        files["deployment.yaml"] = files["deployment.yaml"].replace(
            f"image: {base_image}", f'image: {base_image} # {{"$imagepolicy": "flux-system:{app}"}}'
        )
    if shape == "external":
        base_dir = (external_root or repo.parent / "external") / app
        overlay_dir = repo / OVERLAY_ROOT / app
        base_ref = _relpath(base_dir, overlay_dir)
    else:
        base_dir = repo / BASE_ROOT / app
        base_ref = f"../../../base/{app}"
    write_tree(base_dir, files)
    write_tree(repo / OVERLAY_ROOT / app, overlay_files(app, shape, tag, service_port, base_ref))


def _relpath(path: Path, start: Path) -> str:
    import os

    return os.path.relpath(path, start)


def write_tree(root: Path, files: dict[str, str]) -> None:
    import textwrap

    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        body = textwrap.dedent(text) if text.startswith(" ") else text
        path.write_text(body, encoding="utf-8")


def write_common(repo: Path, apps: list[str]) -> None:
    """The repo-level files: .yamllint, the production kustomization, a graveyard, README."""
    listing = "".join(f"  - {a}\n" for a in apps)
    write_tree(
        repo,
        {
            ".yamllint": YAMLLINT,
            f"{OVERLAY_ROOT}/kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1beta1\n"
            f"kind: Kustomization\nresources:\n{listing}",
            "zz-graveyard/old-site/deployment.yaml": (
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: old-site\nspec:\n  template:\n"
                "    spec:\n      containers:\n        - name: old-site\n"
                f"          image: {REGISTRY}/alpha.com:v0.0.1\n"
            ),
            "README.md": "# fixture GitOps repo (generated by tests/gitops/repo_gen.py)\n",
        },
    )


def write_filler(repo: Path, count: int, apps: int = 20) -> int:
    """``count`` extra YAML files in other apps (configmaps, deployments), like the rest of a repo."""
    written = 0
    per_app = max(1, count // apps)
    for a in range(apps):
        for i in range(per_app):
            if written >= count:
                return written
            path = repo / f"fluxcd/apps/base/tool-{a:02d}/configs/cm-{i:04d}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(
                f'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: tool-{a}-{i}\ndata:\n  key: "{i}"\n',
                encoding="utf-8",
            )
            written += 1
    return written


def git_commit(repo: Path, remote: bool = True) -> None:
    """Make ``repo`` a real git repo with one commit (and a bare remote ``origin``)."""
    env_cfg = ["-c", "user.name=fixture", "-c", "user.email=fixture@example.invalid", "-c", "commit.gpgsign=false"]

    def git(*args: str, cwd: Path = repo) -> None:
        subprocess.run(["git", *env_cfg, *args], cwd=cwd, check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("commit", "-q", "-m", "initial")
    if remote:
        bare = repo.parent / f"{repo.name}-remote.git"
        git("init", "-q", "--bare", str(bare), cwd=repo.parent)
        git("remote", "add", "origin", str(bare))
        git("push", "-q", "origin", "main")


SHAPES = {
    "alpha-site": "patch",
    "beta-site": "images",
    "gamma-site": "base",
    "epsilon-site": "trap",
    "delta-site": "external",
    "twin-site": "twin",
}


def make_repo(root: Path, apps: dict[str, str] | None = None, *, filler: int = 0, git: bool = True) -> Path:
    """A fixture GitOps repo at ``root/gitops`` with one app per entry of ``apps`` (name → shape)."""
    apps = SHAPES if apps is None else apps
    repo = root / "gitops"
    repo.mkdir(parents=True, exist_ok=True)
    for n, (app, shape) in enumerate(sorted(apps.items())):
        write_app(repo, app, shape, service_port=4015 + n, external_root=root / "external")
    write_common(repo, sorted(apps))
    if filler:
        write_filler(repo, filler)
    if git:
        git_commit(repo)
    return repo
