"""What the image audit reads from an image, and only that: configs, scripts, user tables, small text.

Everything comes through :mod:`imgforge.image`: the layers are streamed once by ``read_fs``, and
the files the rules will want are kept from that pass by a ``prefetch`` predicate (nginx configs,
the start-up scripts the config names, ``/etc/passwd``, small text files in the usual web roots),
within a byte budget of its own, so an image with a huge web root never hits the reader's
``max_read_bytes``. What the predicate could not know in advance (a script another script runs, a
config included from elsewhere, a web root in an odd place) is read by ``read_files``, which opens
only the layers that hold it.
"""

from __future__ import annotations

import fnmatch
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from imgforge.audit._repo import DEFAULT_ROOTS
from imgforge.audit._shell import commands, is_shell_script, shell_text
from imgforge.audit.nginx_rules import NginxUnparsable, Parsed, parse_file, walk_directives
from imgforge.audit.startup import Step
from imgforge.audit.webroot import wants_text
from imgforge.errors import AuditUnreadable
from imgforge.image import Entry, ImageFS, ImageInvalid, ImageRefused
from imgforge.image.config import ImageConfig

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MAIN_CONFIG = "/etc/nginx/nginx.conf"
MAX_SCRIPT = 256 * 1024  # a start-up script is read only up to this size (an ELF binary is not a script)
PREFETCH_BUDGET = 64 * 1024 * 1024
_NGINX_DIRS = ("/etc/nginx/", "/usr/share/nginx/modules", "/usr/local/nginx/conf/")
_USER_TABLES = ("/etc/passwd", "/etc/group")
_ENTRYPOINT_DIR = "/docker-entrypoint.d"
_ROOT_GUESSES = (*(r + "/" for r in DEFAULT_ROOTS), "/var/www/", "/srv/", "/usr/share/nginx/")
_MAX_CONFIGS = 1000
_MAX_SCRIPTS = 64
_GLOB = set("*?[")


def argv(config: ImageConfig) -> list[str]:
    """What the container runs: ``Entrypoint`` followed by ``Cmd``, as the engine joins them."""
    return list(config.entrypoint or ()) + list(config.cmd or ())


def env_of(config: ImageConfig) -> dict[str, str]:
    env = config.env_map
    env.setdefault("PATH", DEFAULT_PATH)
    return env


def main_config(words: list[str]) -> str:
    """The main nginx config the command line names (``nginx -c PATH``), else the default."""
    for i, word in enumerate(words[:-1]):
        if word == "-c" and any(os.path.basename(w) == "nginx" for w in words[:i]):
            return words[i + 1]
    return MAIN_CONFIG


def prefetch(config: ImageConfig) -> Callable[[Entry], bool]:
    """The first pass's predicate: files the rules will read, up to :data:`PREFETCH_BUDGET` bytes."""
    env = env_of(config)
    words = argv(config)
    wanted = {w for w in words if w.startswith("/")} | set(_USER_TABLES) | {main_config(words)}
    if words and "/" not in words[0]:
        wanted |= {os.path.join(d, words[0]) for d in env["PATH"].split(":") if d}
    left = [PREFETCH_BUDGET]

    def accept(entry: Entry) -> bool:
        path = entry.path
        keep = (
            path in wanted
            or path.startswith(_NGINX_DIRS)
            or path.startswith(_ENTRYPOINT_DIR + "/")
            or (path.startswith(_ROOT_GUESSES) and wants_text(os.path.basename(path), entry.size))
        )
        if not keep or entry.size > left[0] or (path not in _USER_TABLES and entry.size > 2 * MAX_SCRIPT):
            return False
        left[0] -= entry.size
        return True

    return accept


def which(fs: ImageFS, name: str, env: dict[str, str]) -> str | None:
    """The image path of the program ``name`` (searched in ``PATH`` unless it holds a ``/``)."""
    candidates = [name] if "/" in name else [os.path.join(d, name) for d in env["PATH"].split(":") if d]
    for path in candidates:
        entry = lookup(fs, path)
        if entry is not None and entry.is_regular:
            return path
    return None


def lookup(fs: ImageFS, path: str) -> Entry | None:
    """``fs.lookup`` where a link loop or a climb out of the image is simply "not there"."""
    try:
        return fs.lookup(path)
    except (ImageInvalid, ImageRefused):
        return None


def read_small(fs: ImageFS, paths: Iterable[str], max_size: int = MAX_SCRIPT) -> dict[str, bytes]:
    """The regular files among ``paths`` up to ``max_size`` each (prefetched ones cost nothing)."""
    small = [
        p for p in dict.fromkeys(paths) if (e := lookup(fs, p)) is not None and e.is_regular and e.size <= max_size
    ]
    return fs.read_files(small) if small else {}


def load_nginx(fs: ImageFS, main: str, where: str) -> dict[str, Parsed]:
    """The main config and every file it includes (globs expanded in the image), keyed by the
    path nginx opens; files that are not in the image (written at start-up under /tmp) are left out.
    ``where`` names the image in the AuditUnreadable raised for a config crossplane cannot parse."""
    configs: dict[str, Parsed] = {}
    conf_dir = os.path.dirname(main)
    todo = [main]
    with tempfile.TemporaryDirectory(prefix="imgforge-audit-") as tmp:
        while todo and len(configs) < _MAX_CONFIGS:
            batch = [p for p in dict.fromkeys(todo) if p not in configs]
            todo = []
            found = read_small(fs, batch, max_size=4 * 1024 * 1024)
            for path in batch:
                if path not in found:
                    continue
                configs[path] = _parse(found[path], path, Path(tmp) / f"{len(configs)}.conf", where)
                for d, _ in walk_directives(configs[path]):
                    if d["directive"] == "include" and d["args"]:
                        todo += _expand_include(fs, os.path.join(conf_dir, d["args"][0]))
    return configs


def _parse(data: bytes, path: str, copy: Path, where: str) -> Parsed:
    copy.write_bytes(data)
    try:
        return parse_file(copy)
    except NginxUnparsable as e:
        at = f":{e.line}" if e.line else ""
        raise AuditUnreadable(f"{where}: {path}{at}: cannot parse nginx config: {e}") from e


def _expand_include(fs: ImageFS, pattern: str) -> list[str]:
    """An include's files, as nginx's glob(3) would list them: sorted, no dotfiles for a ``*``."""
    pattern = os.path.normpath(pattern)
    if not _GLOB & set(pattern):
        return [pattern]
    parts = pattern.split("/")
    fixed = "/".join(parts[: next(i for i, p in enumerate(parts) if _GLOB & set(p))]) or "/"
    try:
        real = fs.resolve(fixed)
    except (ImageInvalid, ImageRefused):
        return []
    found = []
    for entry in fs.walk(real):
        path = fixed.rstrip("/") + entry.path[len(real) :]
        names = path.split("/")
        if len(names) != len(parts) or not fnmatch.fnmatchcase(path, pattern):
            continue
        if any(n.startswith(".") and not p.startswith(".") for n, p in zip(names, parts, strict=True)):
            continue
        target = lookup(fs, path)
        if target is not None and target.is_regular:
            found.append(path)
    return sorted(found)


def runtime_ids(user: str, tables: dict[str, bytes]) -> tuple[int | None, int | None]:
    """(uid, gid) the engine runs ``User`` as, names looked up in the image's /etc/passwd and /etc/group.

    A numeric UID without a group takes its passwd entry's group, else 0, as runc does; a name
    that is not in /etc/passwd gives None (the engine would refuse to start the container).
    """
    name, _, group = user.partition(":")
    passwd = _table(tables.get("/etc/passwd", b""))
    uid: int | None = None
    gid: int | None = None
    if name.isdigit():
        uid = int(name)
        gid = next((int(r[3]) for r in passwd if r[2] == name and r[3].isdigit()), 0)
    else:
        row = next((r for r in passwd if r[0] == name and r[2].isdigit() and r[3].isdigit()), None)
        if row is not None:
            uid, gid = int(row[2]), int(row[3])
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            groups = _table(tables.get("/etc/group", b""))
            gid = next((int(r[2]) for r in groups if r[0] == group and r[2].isdigit()), None)
    return uid, gid


def _table(data: bytes) -> list[list[str]]:
    rows = (line.split(":") for line in data.decode("utf-8", "replace").splitlines())
    return [r for r in rows if len(r) >= 4]


def startup_steps(fs: ImageFS, config: ImageConfig) -> list[Step]:
    """The shell the container runs at start-up: a shell-form Entrypoint/Cmd, the shell scripts the
    command line names, the scripts those run or source (three levels), and ``/docker-entrypoint.d``
    when a script runs that folder (the official nginx images' convention)."""
    env = env_of(config)
    words = argv(config)
    steps: list[Step] = []
    if (text := shell_text(words)) is not None:
        field = "config.Entrypoint" if config.entrypoint and shell_text(list(config.entrypoint)) else "config.Cmd"
        steps.append(Step(field, None, text))
    first = which(fs, words[0], env) if words else None
    todo = ([first] if first else []) + [w for w in words[1:] if w.startswith("/")]
    seen: set[str] = set()
    for _ in range(3):
        todo = [p for p in dict.fromkeys(todo) if p not in seen][:_MAX_SCRIPTS]
        seen |= set(todo)
        found = read_small(fs, todo)
        todo = []
        for path, data in found.items():
            if not is_shell_script(data):
                continue
            text = data.decode("utf-8", "replace")
            steps.append(Step(path, 1, text))
            for cmd in commands(text, 1, dict(env)):
                if cmd.name in (".", "source") and cmd.args:
                    todo.append(cmd.args[0])
                elif cmd.path.startswith("/"):
                    todo.append(cmd.path)
            if _ENTRYPOINT_DIR in text:
                todo += [p for p in fs.children(_ENTRYPOINT_DIR) if p.endswith((".sh", ".envsh"))]
        todo = [p for p in todo if p.startswith("/")]
    return steps
