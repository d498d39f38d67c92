"""JSON bytes as Go's ``encoding/json`` writes them, and canonical JSON for our own documents.

cosign, go-containerregistry and go-securesystemslib serialize with Go's ``json.Marshal``:
compact, struct fields in declaration order, map keys sorted, and ``<``, ``>``, ``&``, U+2028 and
U+2029 escaped as ``\\u003c`` and so on. Signatures cover these exact bytes, so to produce a payload
byte-identical to cosign's we build dicts in Go's field order and serialize them here.
"""

from __future__ import annotations

import json
from typing import Any

# Go escapes these inside strings; none of them can appear outside a string in JSON output, so a
# plain replacement on the serialized text is exact.
_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def go_json(value: Any) -> bytes:
    """Compact JSON in the dicts' own key order, escaped like Go's ``json.Marshal``.

    Dicts standing for Go maps must be given with sorted keys (use ``sorted_map``); dicts standing
    for Go structs keep their declaration order.
    """
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for raw, escaped in _GO_ESCAPES.items():
        text = text.replace(raw, escaped)
    return text.encode("utf-8")


def sorted_map(value: Any) -> Any:
    """``value`` with every dict's keys sorted, recursively: how Go marshals ``map[string]any``."""
    if isinstance(value, dict):
        return {k: sorted_map(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [sorted_map(v) for v in value]
    return value


def canonical_json(value: Any) -> bytes:
    """Sorted keys, compact, UTF-8: the same document always gives the same bytes (and digest)."""
    return go_json(sorted_map(value))
