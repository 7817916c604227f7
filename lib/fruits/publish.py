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
    """Replace ``final``'s outputs with ``staged``'s (same file system), the manifest last."""
    fs, root = fsspec.core.url_to_fs(final.root)
    _, staged_root = fsspec.core.url_to_fs(staged.root)
    _swap(fs, staged_root, root, run_id)
    discard(staged)


def upload(local: OutputLayout, final: OutputLayout, run_id: str) -> None:
    """Publish a run written on local disk to a remote ``final`` (``s3://``) folder.

    Used where Spark cannot write the remote scheme itself (a local pyspark without
    an S3 connector): files go to a remote staging prefix first, then take the place
    of the previous outputs, the manifest last.
    """
    import os

    fs, root = fsspec.core.url_to_fs(final.root)
    staged_root = f"{root.rstrip('/')}/{STAGING_PREFIX}{run_id}"
    try:
        for name in PUBLISHED:
            source = os.path.join(local.root, name)
            if os.path.isfile(source):
                fs.put_file(source, f"{staged_root}/{name}")
            elif os.path.isdir(source):
                for folder, _, files in os.walk(source):
                    for file_name in files:
                        path = os.path.join(folder, file_name)
                        relative = os.path.relpath(path, local.root).replace(os.sep, "/")
                        fs.put_file(path, f"{staged_root}/{relative}")
        _swap(fs, staged_root, root, run_id)
    finally:
        if fs.exists(staged_root):
            fs.rm(staged_root, recursive=True)


def _swap(fs, staged_root: str, root: str, run_id: str) -> None:
    previous = f"{root.rstrip('/')}/{PREVIOUS_PREFIX}{run_id}"
    fs.makedirs(previous, exist_ok=True)
    for name in PUBLISHED:
        current = f"{root.rstrip('/')}/{name}"
        if fs.exists(current):
            _move(fs, current, f"{previous}/{name}")
    for name in PUBLISHED:
        source = f"{staged_root.rstrip('/')}/{name}"
        if fs.exists(source):
            _move(fs, source, f"{root.rstrip('/')}/{name}")
    if fs.exists(previous):
        fs.rm(previous, recursive=True)


def _move(fs, source: str, target: str) -> None:
    """A rename on local disks (atomic); object by object (copy, delete) on object stores."""
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in ("file", "local"):
        fs.mv(source, target, recursive=True)
        return
    fs.invalidate_cache()
    paths = fs.find(source) if fs.isdir(source) else [source]
    for path in paths:
        fs.mv(path, target + path[len(source):])
    fs.invalidate_cache()


def discard(staged: OutputLayout) -> None:
    """Remove a staging folder (after publishing, or after a failure)."""
    remove_path(staged.root)


def path_exists(path: str) -> bool:
    """True if a local path or fsspec URL exists."""
    fs, fs_path = fsspec.core.url_to_fs(path)
    return fs.exists(fs_path)


def remove_path(path: str) -> None:
    """Delete a file or folder, local or remote, if it exists."""
    fs, fs_path = fsspec.core.url_to_fs(path)
    if fs.exists(fs_path):
        fs.rm(fs_path, recursive=True)
