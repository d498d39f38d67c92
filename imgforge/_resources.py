"""Where imgforge's own files (the templates) are: one deterministic rule, never a guess.

Installed from a wheel, the top-level ``templates/`` folder ships as the package data
``imgforge._templates``. In a source checkout (an editable install, or the tests) there is no
such package; the templates are the ``templates/`` folder beside the ``imgforge`` package, and
only when that folder's parent is imgforge's own checkout (its pyproject.toml names imgforge),
so a stray ``site-packages/templates`` of some other project can never be picked up.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from imgforge.errors import ImgforgeError

_PROJECT = re.compile(r'^name\s*=\s*"imgforge"\s*$', re.MULTILINE)


def templates_dir() -> Path:
    """The folder holding the templates of the running imgforge."""
    spec = importlib.util.find_spec("imgforge._templates")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    checkout = Path(__file__).resolve().parent.parent
    pyproject = checkout / "pyproject.toml"
    if pyproject.is_file() and _PROJECT.search(pyproject.read_text(encoding="utf-8")):
        return checkout / "templates"
    raise ImgforgeError("imgforge's templates are missing from this installation; reinstall imgforge")


def read_template(name: str) -> str:
    """The text of one template file (for files used as they are, without Jinja)."""
    return (templates_dir() / name).read_text(encoding="utf-8")
