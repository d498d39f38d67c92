"""What a running image says about the static site inside it: is it one, and how does it serve it.

``imgforge adopt`` starts from the fleet's root images. Each is read once from its registry (the
image reader, no engine) and audited with the image audit; from the same file tree come the nginx
configs (the main one and what it includes, as nginx reads them), the web root of its ``root``
directive and whether it holds files, and what visitors get (``migrate``'s reading of
``try_files``, ``add_header``, ``gzip``, caching and IPv6). An image that is no static nginx site
running as root says why, in one line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from imgforge.audit._image_files import argv, load_nginx, lookup, main_config, prefetch
from imgforge.audit.image import audit_image
from imgforge.audit.image_source import registry_image
from imgforge.audit.metadata import is_root_user
from imgforge.audit.migrate import nginx_behaviour
from imgforge.audit.nginx_rules import web_roots
from imgforge.image import ImageFS, read_fs


@dataclass
class ImageSite:
    """One image as ``adopt`` needs it; ``problem`` says why it is not a static nginx root site."""

    reference: str
    digest: str = ""  # the registry's manifest digest
    user: str = ""  # the config's User as written ("" = root)
    web_root: str | None = None  # the folder nginx serves, as its config names it
    files: int = 0  # regular files under the web root
    behaviour: dict[str, Any] = field(default_factory=dict)  # migrate.nginx_behaviour of its configs
    audit: dict[str, int] = field(default_factory=dict)  # the image audit's summary
    problem: str | None = None


def read_image_site(reference: str) -> ImageSite:
    """The image ``reference`` from its registry, judged; registry failures raise (the caller notes them)."""
    with registry_image(reference) as image:
        fs = read_fs(image, prefetch=prefetch(image.config))
        site = ImageSite(reference, image.digest, image.config.user)
        site.audit = audit_image(image, reference, fs).summary()
        configs = load_nginx(fs, main_config(argv(image.config)), reference)
    if not is_root_user(site.user):
        site.problem = f"the image already runs as USER {site.user}"
    elif not configs:
        site.problem = "no nginx config in the image: not a static nginx site"
    else:
        site.behaviour = nginx_behaviour(configs)
        site.web_root, site.files, site.problem = _web_root(fs, web_roots(configs))
    return site


def _web_root(fs: ImageFS, roots: list[str]) -> tuple[str | None, int, str | None]:
    """(the one root that is a folder with files, their count, None) or the problem."""
    with_files: list[tuple[str, int]] = []
    for root in roots:
        entry = lookup(fs, root)
        if entry is None or not entry.is_dir:
            continue
        count = sum(1 for e in fs.walk(entry.path) if e.is_regular or e.is_symlink)
        if count:
            with_files.append((root, count))
    if not with_files:
        looked = ", ".join(roots) or "no root directive"
        return None, 0, f"no web root with files ({looked})"
    if len(with_files) > 1:
        return None, 0, "several web roots with files (" + ", ".join(r for r, _ in with_files) + "): one site each"
    return with_files[0][0], with_files[0][1], None
