"""The nginx rules both audits apply (IMG001–IMG007), over configs parsed by crossplane.

A repo's configs come from its files, an image's from ``/etc/nginx/nginx.conf`` and what it
includes; either way each file is parsed on its own (``single=True``) so line numbers are that
file's, and a file whose top level holds ``http`` or ``events`` is a main config, to which nginx's
compiled-in defaults (pid under /run, temp paths under the prefix, ``server_tokens on``) apply.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import crossplane

from imgforge.audit.findings import Finding, finding

Directive = dict[str, Any]
Parsed = list[Directive]

TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
_STDIO_LOGS = ("/dev/stdout", "/dev/stderr", "/proc/self/fd/1", "/proc/self/fd/2")


class NginxUnparsable(Exception):
    """crossplane refused a file; ``line`` is where, when it knows."""

    def __init__(self, message: str, line: int | None):
        super().__init__(message)
        self.line = line


def parse_file(path: Path) -> Parsed:
    """One nginx config file, includes not followed; NginxUnparsable (or OSError) when it cannot be read."""
    payload = crossplane.parse(str(path), single=True, check_ctx=False, check_args=False)
    config = payload["config"][0] if payload["config"] else {"parsed": [], "errors": payload["errors"]}
    errors = config["errors"] or payload["errors"]
    if errors:
        raise NginxUnparsable(errors[0].get("error") or "syntax error", errors[0].get("line"))
    parsed: Parsed = config["parsed"]
    return parsed


def walk_directives(parsed: Parsed, ctx: tuple[str, ...] = ()) -> Iterator[tuple[Directive, tuple[str, ...]]]:
    """Every directive with the names of the blocks around it (``("http", "server")``)."""
    for d in parsed:
        yield d, ctx
        if "block" in d:
            yield from walk_directives(d["block"], (*ctx, d["directive"]))


def is_main(parsed: Parsed) -> bool:
    return any(d["directive"] in ("events", "http") for d in parsed)


def listen_port(arg: str) -> int | None:
    if arg.startswith("unix:"):
        return None
    text = arg.rsplit("]:", 1)[-1] if arg.startswith("[") else arg.rsplit(":", 1)[-1]
    return int(text) if text.isdigit() else None


def default_log_ok(path: str) -> bool:
    return path.startswith("/tmp/") or path in _STDIO_LOGS


def check_config(rel: str, parsed: Parsed, log_ok: Callable[[str], bool] = default_log_ok) -> list[Finding]:
    """IMG001–IMG004 and IMG006 for one file; ``log_ok`` says whether a log path is harmless."""
    out: list[Finding] = []
    seen: set[str] = set()
    for d, _ in walk_directives(parsed):
        name, args, line = d["directive"], d["args"], d["line"]
        seen.add(name)
        if name == "user":
            out.append(finding("IMG001", rel, line, f"`user {' '.join(args)};`: remove it; the image's USER decides"))
        elif name == "pid" and args and not args[0].startswith("/tmp/"):
            out.append(finding("IMG002", rel, line, f"pid {args[0]}: move it to /tmp (e.g. /tmp/nginx.pid)"))
        elif name.endswith("_temp_path") and args and not args[0].startswith("/tmp/"):
            out.append(finding("IMG003", rel, line, f"{name} {args[0]}: move it under /tmp"))
        elif name == "listen" and args and (port := listen_port(args[0])) is not None and port < 1024:
            out.append(finding("IMG004", rel, line, f"listen {args[0]}: use a port ≥ 1024 (e.g. 8080)"))
        elif name in ("error_log", "access_log") and args and _log_file(args[0]) and not log_ok(args[0]):
            out.append(
                finding("IMG006", rel, line, f"{name} {args[0]}: log to stdout/stderr (/dev/stdout, stderr) instead")
            )
    if is_main(parsed):  # nginx's compiled-in defaults apply to a main config
        if "pid" not in seen:
            out.append(
                finding(
                    "IMG002",
                    rel,
                    None,
                    "no pid directive: the compiled-in default (/run or /var/run) is not writable by a "
                    "non-root user; set pid /tmp/nginx.pid",
                )
            )
        missing = [p for p in TEMP_PATHS if f"{p}_temp_path" not in seen]
        if any(d["directive"] == "http" for d in parsed) and missing:
            names = ", ".join(f"{p}_temp_path" for p in missing)
            out.append(finding("IMG003", rel, None, f"no {names}: the defaults are outside /tmp; set each under /tmp"))
    return out


def _log_file(arg: str) -> bool:
    """A log target that is a file path (not ``off``, ``stderr``, ``syslog:``, ``memory:``, a variable)."""
    return arg not in ("off", "stderr") and not arg.startswith(("syslog:", "memory:")) and "$" not in arg


def check_server_tokens(configs: Mapping[str, Parsed]) -> list[Finding]:
    """IMG005: every ``server_tokens`` other than ``off``, and servers left at nginx's default (on).

    The default is on, so a main config whose ``http`` block does not say ``off`` shows the version
    on every server that does not say it itself; without a main config (a repo that ships only a
    server block for a base's nginx.conf), each such server is reported.
    """
    out: list[Finding] = []
    http_set = False  # an http-level server_tokens (one that is not off is reported as it is)
    main_http: tuple[str, int] | None = None
    servers: list[tuple[str, Directive]] = []
    for rel, parsed in configs.items():
        for d, ctx in walk_directives(parsed):
            name, args = d["directive"], d["args"]
            if name == "server_tokens":
                http_set = http_set or ctx == ("http",)
                if args[:1] != ["off"]:
                    shown = " ".join(args)
                    out.append(
                        finding("IMG005", rel, d["line"], f"server_tokens {shown}: shows the version; set it off")
                    )
            elif name == "http" and not ctx:
                main_http = (rel, d["line"])
            elif name == "server" and ctx in ((), ("http",)) and "block" in d:
                servers.append((rel, d))
    if http_set:
        return out
    unset = [(rel, d) for rel, d in servers if not any(x["directive"] == "server_tokens" for x in d["block"])]
    if main_http is not None and (unset or not servers):
        rel, line = main_http
        out.append(
            finding(
                "IMG005",
                rel,
                line,
                "no `server_tokens off;` in http: nginx's default (on) shows its version; set it off",
            )
        )
    elif main_http is None:
        out += [
            finding("IMG005", rel, d["line"], "server without `server_tokens off;`: nginx's default shows its version")
            for rel, d in unset
        ]
    return out


def refusals(configs: Mapping[str, Parsed]) -> list[re.Pattern[str]]:
    """Regex locations that answer 403/404 (or ``deny all``): files they match ship but are not served."""
    out = []
    for parsed in configs.values():
        for d, _ in walk_directives(parsed):
            args, block = d["args"], d.get("block", [])
            if d["directive"] != "location" or len(args) != 2 or args[0] not in ("~", "~*"):
                continue
            if any(
                (x["directive"] == "return" and x["args"][:1] in (["403"], ["404"]))
                or (x["directive"] == "deny" and x["args"] == ["all"])
                for x in block
            ):
                try:
                    out.append(re.compile(args[1], re.IGNORECASE if args[0] == "~*" else 0))
                except re.error:
                    continue
    return out


def web_roots(configs: Mapping[str, Parsed]) -> list[str]:
    """The literal ``root``/``alias`` folders of the configs, in order, each once."""
    found = [
        d["args"][0]
        for parsed in configs.values()
        for d, _ in walk_directives(parsed)
        if d["directive"] in ("root", "alias") and d["args"] and "$" not in d["args"][0]
    ]
    return list(dict.fromkeys(found))
