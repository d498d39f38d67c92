"""Audit an image as it is, the way dockle or container-structure-test look at one: no engine run.

The image is read with :mod:`imgforge.image` (from a registry, the local engine, an OCI layout or
a ``docker save`` archive): its config for USER, ports, stop signal and the start-up command, and
its merged file tree for nginx's configs (the main one and what it includes), the start-up
scripts, the web root and every file's mode and owner. The rules are the repo audit's, with the
same ids and severities; a finding's ``file`` is the path inside the image, or ``config.User``
style for the config. The layers are streamed once, with the reader's caps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from imgforge.audit import fs_rules
from imgforge.audit._image_files import (
    argv,
    env_of,
    load_nginx,
    lookup,
    main_config,
    prefetch,
    read_small,
    runtime_ids,
    startup_steps,
    which,
)
from imgforge.audit._repo import DEFAULT_ROOTS
from imgforge.audit.findings import Finding, finding, sort_key, summary
from imgforge.audit.metadata import check_exposed, check_stop_signal, check_user, is_root_user
from imgforge.audit.nginx_rules import check_config, check_server_tokens, default_log_ok, refusals, web_roots
from imgforge.audit.startup import check_steps
from imgforge.image import ImageFS, ImageInvalid, ImageRefused, ResolvedImage, read_fs


@dataclass(frozen=True)
class ImageAudit:
    """The findings for one image and what identifies it."""

    reference: str  # as the caller named it
    digest: str  # the manifest digest (for an engine image: its synthesised one; see config_digest)
    config_digest: str  # the image ID
    platform: str
    user: str  # the config's User as written ("" = root)
    findings: list[Finding] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        return summary(self.findings)


def audit_image(image: ResolvedImage, reference: str, fs: ImageFS | None = None) -> ImageAudit:
    """Every rule over ``image``; AuditUnreadable for an nginx config crossplane cannot parse.

    ``fs``: the image's file tree when the caller already read it (with ``prefetch(config)``), so
    the layers are not streamed twice.
    """
    config = image.config
    fs = fs or read_fs(image, prefetch=prefetch(config))
    env = env_of(config)
    found = check_user(config.user or None, "config.User", None)
    found += check_exposed(list(config.exposed_ports), "config.ExposedPorts", None)
    found += check_stop_signal(config.stop_signal or None, "config.StopSignal", None)
    main = main_config(argv(config))
    configs = load_nginx(fs, main, reference)
    if not configs:
        found.append(finding("IMG007", main, None, f"no nginx config at {main}: the nginx rules were not checked"))
    for path, parsed in configs.items():
        found += check_config(path, parsed, _log_ok(fs))
    found += check_server_tokens(configs)

    def installed(tool: str, path: str) -> bool:
        return which(fs, path or tool, env) is not None

    found += check_steps(startup_steps(fs, config), env, installed)
    roots = _roots(fs, web_roots(configs) if configs else [])
    runtime = None
    if not is_root_user(config.user):
        uid, gid = runtime_ids(config.user, read_small(fs, ("/etc/passwd", "/etc/group")))
        runtime = fs_rules.Runtime(config.user, uid, gid)
    refused_by = refusals(configs)
    for root in roots:
        found += fs_rules.webroot(fs, root, lambda uri: any(p.search(uri) for p in refused_by), runtime)
    if configs and not roots:
        looked = ", ".join(web_roots(configs) or DEFAULT_ROOTS)
        found.append(finding("IMG034", main, None, f"none of {looked} is a folder in the image"))
    found += fs_rules.world_writable(fs, roots)
    found += fs_rules.setuid(fs)
    found += fs_rules.caches(fs)
    return ImageAudit(
        reference,
        image.digest,
        image.config_digest,
        str(image.platform),
        config.user,
        sorted(found, key=sort_key),
    )


def _log_ok(fs: ImageFS) -> Callable[[str], bool]:
    """A log path is harmless under /tmp, or when it leads to stdout/stderr (the official images
    link ``/var/log/nginx/access.log`` to ``/dev/stdout``)."""

    def ok(path: str) -> bool:
        if default_log_ok(path):
            return True
        try:
            return default_log_ok(fs.resolve(path))
        except (ImageInvalid, ImageRefused):
            return False

    return ok


def _roots(fs: ImageFS, configured: list[str]) -> list[str]:
    """The web roots that are folders in the image, links followed (the configs', else the defaults)."""
    found: list[str] = []
    for root in configured or list(DEFAULT_ROOTS):
        entry = lookup(fs, root)
        if entry is not None and entry.is_dir and entry.path not in found:
            found.append(entry.path)
    return found
