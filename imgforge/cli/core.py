"""Commands of the core pipeline: sites, render, build, base."""

from __future__ import annotations

from rich.table import Table

from imgforge import config
from imgforge.cli._app import JsonOpt, RootOpt, app, console, print_json


@app.command("sites")
def sites_cmd(root: RootOpt = None, json_out: JsonOpt = False) -> None:
    """List the site catalog."""
    catalog = config.load_catalog(root)
    rows = [_site_row(catalog, s) for s in catalog.sites.values()]
    if json_out:
        print_json(rows)
        return
    table = Table("site", "image", "profile", "uid:gid", "port", "fallback", "content", "gitops app")
    for r in rows:
        table.add_row(r["site"], r["image"], r["profile"], f"{r['uid']}:{r['gid']}", str(r["port"]),
                      r["fallback"], r["content"] or "-", r["app"])
    console.print(table)


def _site_row(catalog: config.Catalog, site: config.Site) -> dict:
    src = site.source
    content = None
    if src and src.path is not None:
        content = f"{src.path}/{src.content_dir}"
    elif src and src.git:
        content = f"{src.git}@{src.ref}:{src.content_dir}"
    return {
        "site": site.name, "image": site.reference, "profile": site.profile,
        "base_image": catalog.profile(site).base_image, "uid": site.uid, "gid": site.gid,
        "port": site.port, "fallback": site.fallback, "ipv6": site.ipv6,
        "read_only_root": site.read_only_root, "content": content, "app": site.app,
        "namespace": site.gitops.namespace, "file": site.file,
    }
