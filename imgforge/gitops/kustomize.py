"""The one ``kubectl kustomize`` runner: single overlays, patched copies, and batches of many.

What Flux applies is the rendered manifest, so plans, their proofs and the fleet report all read
renders, never source files alone. Starting kubectl costs more than rendering a small overlay, so
many overlays are rendered in one run: each is wrapped in a kustomization that stamps its objects
with a private annotation, and the output is split on it again. A batch that cannot work (two
overlays render the same object, one overlay is broken) falls back to one run per overlay, so
every failure is reported against its own overlay with kustomize's own message.

Renders of planned changes run on a temporary copy of the kustomization folders involved, with
the planned texts written into it: a failing proof never leaves a trace in the user's repo.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from imgforge.errors import GitopsError, KustomizeFailed

KUSTOMIZE_TIMEOUT = 120
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
GRAVEYARD = "zz-graveyard"  # the repo's folder of retired apps: never rendered, never edited
BATCH_ANNOTATION = "imgforge.invalid/batch-key"
BATCH_MAX = 25  # overlays per kubectl run when many are rendered

Objects = list[dict[str, Any]]
Job = tuple[Path, list[Path], dict[Path, str]]  # (overlay, its kustomization folders, texts to write over)


def kubectl() -> str:
    """Path of kubectl, or a GitopsError saying why it is needed."""
    found = shutil.which("kubectl")
    if found is None:
        raise GitopsError("kubectl not found on PATH; it is needed to render overlays (kubectl kustomize)")
    return found


def load_objects(text: str) -> Objects:
    """The rendered objects (libyaml through PyYAML: ten times faster than pure Python on big renders)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [d for d in yaml.load_all(text, Loader=loader) if isinstance(d, dict)]


def error_line(stderr: str) -> str:
    """kubectl's error as one line: klog prefixes and ``"command failed" err="..."`` wrappers removed."""
    text = " ".join(stderr.split())
    text = re.sub(r"^[EWIF]\d{4} [\d:.]+ +\d+ \S+\] ", "", text)
    if m := re.match(r'^"command failed" err="(.*)"$', text):
        text = m.group(1).replace('\\"', '"')
    text = text.removeprefix("error: ").removeprefix("Error: ")
    return text[:400] + " …" if len(text) > 400 else text


class Pending:
    """A ``kubectl kustomize`` running in the background while the caller parses files."""

    def __init__(self, overlay: Path, label: str | None = None):
        self.label = label or str(overlay)
        self.proc = subprocess.Popen(
            [kubectl(), "kustomize", str(overlay)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )

    def result(self) -> Objects:
        try:
            out, err = self.proc.communicate(timeout=KUSTOMIZE_TIMEOUT)
        except subprocess.TimeoutExpired as e:
            self.cancel()
            raise KustomizeFailed(self.label, f"timed out after {KUSTOMIZE_TIMEOUT}s") from e
        if self.proc.returncode != 0:
            raise KustomizeFailed(self.label, error_line(err) or f"exit {self.proc.returncode}")
        try:
            return load_objects(out)
        except yaml.YAMLError as e:
            raise KustomizeFailed(self.label, f"rendered output is not YAML: {' '.join(str(e).split())}") from e

    def cancel(self) -> None:
        self.proc.kill()
        self.proc.communicate()


def render(overlay: Path, label: str | None = None) -> Objects:
    """Objects rendered by ``kubectl kustomize overlay`` (no network: remote bases fail here)."""
    return Pending(overlay, label).result()


def render_changed(overlay: Path, folders: list[Path], texts: dict[Path, str], label: str) -> Objects:
    """Render ``overlay`` from a temporary copy of ``folders`` with ``texts`` written over it.

    Kustomize only reads files inside each kustomization's own folder (its load restrictor), and
    bases are other kustomization folders, so copying every folder of the graph is enough. The
    copy keeps the folders' positions relative to each other, so relative references still work.
    """
    with tempfile.TemporaryDirectory(prefix="imgforge-kustomize-") as tmp:
        mirror = _mirror(Path(tmp), [(overlay, folders, texts)])
        return render(mirror(overlay), label)


def render_many(jobs: list[Job]) -> list[Objects]:
    """Render every job's overlay (with its texts written over a copy) in ONE kustomize run.

    Raises ``GitopsError`` whenever the batch cannot be built (two overlays render the same
    object, one fails): callers fall back to rendering one by one.
    """
    if not jobs:
        return []
    with tempfile.TemporaryDirectory(prefix="imgforge-kustomize-") as tmp:
        mirror = _mirror(Path(tmp), jobs)
        keys = [str(i) for i in range(len(jobs))]
        batch = _write_batch(
            Path(tmp) / "imgforge-batch", list(zip(keys, (mirror(o) for o, _, _ in jobs), strict=True))
        )
        split = _split(render(batch, f"{len(jobs)} overlays (batch)"), keys)
    return [split[k] for k in keys]


def render_in_place(overlays: list[Path]) -> list[Objects]:
    """Every overlay as it is on disk, in ONE kustomize run (no copy: nothing is written over them).

    Raises ``GitopsError`` whenever the batch cannot be built; callers fall back to ``render``.
    """
    if not overlays:
        return []
    with tempfile.TemporaryDirectory(prefix="imgforge-kustomize-") as tmp:
        keys = [str(i) for i in range(len(overlays))]
        batch = _write_batch(Path(tmp) / "imgforge-batch", list(zip(keys, overlays, strict=True)))
        split = _split(render(batch, f"{len(overlays)} overlays (batch)"), keys)
    return [split[k] for k in keys]


def render_each(overlays: list[tuple[str, Path]], jobs: int) -> dict[str, Objects | KustomizeFailed]:
    """key -> objects, or the failure of that overlay alone; ``jobs`` kubectl runs at a time.

    Overlays are rendered in batches (one run per batch); a batch that fails is rendered again
    overlay by overlay, so each failure carries its own overlay's error.
    """
    results: dict[str, Objects | KustomizeFailed] = {}
    size = max(1, min(BATCH_MAX, -(-len(overlays) // max(1, jobs))))
    groups = [overlays[i : i + size] for i in range(0, len(overlays), size)]
    with tempfile.TemporaryDirectory(prefix="imgforge-kustomize-") as tmp, ThreadPoolExecutor(max(1, jobs)) as pool:

        def batch(n_group: tuple[int, list[tuple[str, Path]]]) -> dict[str, Objects] | None:
            n, group = n_group
            try:
                return _split(render(_write_batch(Path(tmp) / f"batch{n}", group)), [k for k, _ in group])
            except GitopsError:
                return None

        retry: list[tuple[str, Path]] = []
        for group, split in zip(groups, pool.map(batch, enumerate(groups)), strict=True):
            if split is None:
                retry += group
            else:
                results.update(split)
        for (key, _), one in zip(retry, pool.map(_try_render, retry), strict=True):
            results[key] = one
    return results


def _try_render(member: tuple[str, Path]) -> Objects | KustomizeFailed:
    try:
        return render(member[1], member[0])
    except KustomizeFailed as e:
        return e


def _write_batch(folder: Path, members: Iterable[tuple[str, Path]]) -> Path:
    """A kustomization rendering every member overlay, each object stamped with the member's key."""
    names = []
    for i, (key, overlay) in enumerate(members):
        wrap = folder / f"m{i}"
        wrap.mkdir(parents=True)
        (wrap / "kustomization.yaml").write_text(
            f"resources:\n  - {json.dumps(os.path.relpath(Path(overlay).resolve(), wrap))}\n"
            f"commonAnnotations:\n  {BATCH_ANNOTATION}: {json.dumps(key)}\n",
            encoding="utf-8",
        )
        names.append(f"  - m{i}\n")
    (folder / "kustomization.yaml").write_text("resources:\n" + "".join(names), encoding="utf-8")
    return folder


def _split(objects: Objects, keys: list[str]) -> dict[str, Objects]:
    out: dict[str, Objects] = {k: [] for k in keys}
    for obj in objects:
        key = _strip_batch_annotation(obj)
        if key not in out:
            raise GitopsError("batch render lost an object's overlay")
        out[key].append(obj)
    return out


def _strip_batch_annotation(node: Any) -> str | None:
    """Remove the batch annotation everywhere kustomize put it (pod templates too); returns its value."""
    found = None
    if isinstance(node, dict):
        notes = node.get("annotations")
        if isinstance(notes, dict) and BATCH_ANNOTATION in notes:
            found = notes.pop(BATCH_ANNOTATION)
            if not notes:
                del node["annotations"]
        for value in list(node.values()):
            found = _strip_batch_annotation(value) or found
    elif isinstance(node, list):
        for value in node:
            found = _strip_batch_annotation(value) or found
    return found


def _mirror(tmp: Path, jobs: list[Job]) -> Callable[[Path], Path]:
    """Copy the jobs' folders under ``tmp`` (relative layout kept); returns path → mirrored path."""
    paths = [p.resolve() for overlay, folders, texts in jobs for p in [overlay, *folders, *texts]]
    common = Path(os.path.commonpath([str(p) for p in paths]))
    folders = {f.resolve() for overlay, fs, _ in jobs for f in [overlay, *fs]}
    root = tmp / "tree"
    for folder in _outermost(sorted(folders)):
        shutil.copytree(
            folder,
            root / folder.relative_to(common),
            symlinks=True,
            copy_function=_link_or_copy,
            ignore=shutil.ignore_patterns(".git"),
            dirs_exist_ok=True,
        )
    for _, _, texts in jobs:
        for path, text in texts.items():
            dest = root / path.resolve().relative_to(common)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.unlink(missing_ok=True)  # never write through a hard link into the user's repo
            dest.write_text(text, encoding="utf-8")
    return lambda p: root / Path(p).resolve().relative_to(common)


def _link_or_copy(src: str, dst: str) -> None:
    """Hard-link (kustomize only reads the mirror); copy across filesystems."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _outermost(folders: list[Path]) -> list[Path]:
    out: list[Path] = []
    for f in folders:
        if not any(f.is_relative_to(o) for o in out):
            out.append(f)
    return out
