"""The Jinja environment of the templates in ``templates/`` and the quoting filter of each language.

Templates are data: ``StrictUndefined`` makes a missing value an error instead of an empty string,
and whatever a catalog value puts into a generated file goes through the filter of that file's
language (Dockerfile, shell, nginx), so no value can add an instruction, a word or a directive.
``render`` decides what the templates get; this module only knows how to fill them in safely.
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Mapping

import jinja2

from imgforge._resources import templates_dir
from imgforge.errors import ImgforgeError


class RenderError(ImgforgeError):
    pass


# What may stand unquoted in a generated file: a site name in a comment, a header name, a FROM
# reference. Anything else reaching a template goes through the quoting filter of its language.
_BARE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]*")
_LINE_BREAK = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
NGINX_DOLLAR = "${imgforge_dollar}"  # nginx.conf's geo block defines $imgforge_dollar as "$"


def _one_line(value: object, language: str) -> str:
    """``value`` as text, refused if it holds a line break or control character: no quoting of
    these languages can carry one without ending the instruction (Dockerfile) or the header."""
    text = str(value)
    if _LINE_BREAK.search(text):
        raise RenderError(f"a {language} value holds a line break or control character: {text[:60]!r}")
    return text


def bare(value: object) -> str:
    """A value written without quotes; refused unless it is a plain word."""
    text = str(value)
    if not _BARE.fullmatch(text):
        raise RenderError(f"not a plain word, cannot be written unquoted: {text[:60]!r}")
    return text


def dockerfile_quoted(value: object) -> str:
    """A Dockerfile double-quoted word (LABEL): quotes, backslashes and $ cannot break out or expand."""
    text = _one_line(value, "Dockerfile")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


def shell_quoted(value: object) -> str:
    """A POSIX shell word inside a Dockerfile RUN: single-quoted (nothing expands) unless plain."""
    return shlex.quote(_one_line(value, "shell"))


def nginx_quoted(value: object) -> str:
    """An nginx double-quoted string that reaches clients as written.

    nginx expands ``$name`` in ``add_header`` values and has no escape for ``$``; the geo block in
    nginx.conf makes ``$imgforge_dollar`` a literal "$", so each ``$`` is written as that variable.
    """
    text = _one_line(value, "nginx")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("$", NGINX_DOLLAR) + '"'


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    """One environment per process, so each template is compiled once for all sites."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters.update(bare=bare, dockerfile=dockerfile_quoted, shell=shell_quoted, nginx=nginx_quoted)
    return env


def render_all(outputs: Mapping[str, str], values: Mapping[str, object]) -> dict[str, str]:
    """Each output file name -> its template filled with ``values``; a template error names its line."""
    env = _environment()
    try:
        return {out: env.get_template(template).render(values) for out, template in outputs.items()}
    except jinja2.TemplateError as e:
        where = f"{getattr(e, 'name', None) or 'template'}:{getattr(e, 'lineno', '?')}"
        raise RenderError(f"templates/{where}: {e}") from e
