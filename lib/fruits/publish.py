"""Write a run into a staging folder and publish it only when it has succeeded.

A run that fails or is killed half-way must leave yesterday's results intact and
readable. Every output is first written under ``OUTPUT/.staging-<run id>/``; only
after the last write succeeded are the previous outputs moved aside and the new
ones moved into place, the manifest last (it is the marker of a complete run). On
a local disk or HDFS each move is an atomic rename, so readers see the old or the
new folder, never a half-written one; the window between the first and the last
move is milliseconds. On S3, a move is a copy and delete: the staging still
guarantees that a failed run changes nothing, but the swap itself is not atomic.
"""

from __future__ import annotations

import fsspec

from fruits.layout import OutputLayout

#: What a run publishes, in order; the manifest goes last.
PUBLISHED = ("features", "rejected", "inventory", "pca", "pca_model", "train_features", "classifier",
             "projected", "manifest.json")

STAGING_PREFIX = ".staging-"
PREVIOUS_PREFIX = ".previous-"


def staging_layout(final: OutputLayout, run_id: str) -> OutputLayout:
    """Where run ``run_id`` writes before it is published."""
    return OutputLayout(f"{final.root.rstrip('/')}/{STAGING_PREFIX}{run_id}")


def remove_stale_staging(final: OutputLayout) -> list[str]:
    """Delete staging and previous folders left by runs that were killed; return their paths."""
    fs, root = fsspec.core.url_to_fs(final.root)
    if not fs.exists(root):
        return []
    removed = []
    for entry in fs.ls(root, detail=False):
        name = entry.rstrip("/").rsplit("/", 1)[-1]
        if name.startswith((STAGING_PREFIX, PREVIOUS_PREFIX)):
            fs.rm(entry, recursive=True)
            removed.append(entry)
    return removed


def publish(staged: OutputLayout, final: OutputLayout, run_id: str) -> None:
    """Replace ``final``'s outputs with ``staged``'s, the manifest last, then clean up."""
    fs, root = fsspec.core.url_to_fs(final.root)
    _, staged_root = fsspec.core.url_to_fs(staged.root)
    previous = f"{root.rstrip('/')}/{PREVIOUS_PREFIX}{run_id}"
    fs.makedirs(previous, exist_ok=True)
    for name in PUBLISHED:
        current = f"{root.rstrip('/')}/{name}"
        if fs.exists(current):
            fs.mv(current, f"{previous}/{name}", recursive=True)
    for name in PUBLISHED:
        source = f"{staged_root.rstrip('/')}/{name}"
        if fs.exists(source):
            fs.mv(source, f"{root.rstrip('/')}/{name}", recursive=True)
    fs.rm(previous, recursive=True)
    discard(staged)


def discard(staged: OutputLayout) -> None:
    """Remove a staging folder (after publishing, or after a failure)."""
    fs, root = fsspec.core.url_to_fs(staged.root)
    if fs.exists(root):
        fs.rm(root, recursive=True)
