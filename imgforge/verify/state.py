"""Which image ids passed `imgforge test`, so release and push can refuse the ones that did not.

Kept outside the image (no label can be added after a build without changing its id): a small JSON
file keyed by image id, under ``$IMGFORGE_STATE_DIR`` or ``~/.local/state/imgforge``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from imgforge._fs import atomic_write_text

_FILE = "verified.json"
_KEEP = 500  # newest records kept; older image ids are long gone from any engine


def state_dir() -> Path:
    base = os.environ.get("IMGFORGE_STATE_DIR") or os.path.join(
        os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"), "imgforge"
    )
    return Path(base)


def _load() -> dict[str, Any]:
    path = state_dir() / _FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return {}  # a corrupt state file means "never verified", which only makes us stricter
    return data if isinstance(data, dict) else {}


def record_result(image_id: str, report: dict[str, Any]) -> None:
    """Store the report of the last test of ``image_id`` (replacing any earlier one)."""
    data = _load()
    data.pop(image_id, None)
    data[image_id] = report
    while len(data) > _KEEP:
        data.pop(next(iter(data)))
    directory = state_dir()
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_text(directory / _FILE, json.dumps(data, indent=1, sort_keys=True) + "\n")


def last_result(image_id: str) -> dict[str, Any] | None:
    """The report of the last test of ``image_id``, or None if it was never tested here."""
    return _load().get(image_id)
