"""Where a path lives, decided once: a local folder, or a remote store (``s3://``, anything fsspec knows).

Every module that must tell a local path from a remote one asks here, so a new
kind of location (``gs://``, ``abfs://``, ``hdfs://``) is taught in one place and
never half-supported. The rule:

- a plain path (``/data/out``, ``output/demo``) or a ``file:`` URI is **local**;
- any other ``scheme://`` is **remote**, read and written through fsspec.

Local and remote then share one set of operations (:func:`exists`, :func:`remove`,
:func:`read_json`, :func:`write_json`, :func:`copy`, :func:`deliver`, :func:`upload`, :func:`download`, :func:`open`),
fsspec underneath. Listings are read fresh: fsspec caches them per filesystem, and
another process (a Spark executor, a concurrent run) may have changed the store.
"""

from __future__ import annotations

import builtins
import json
import os
import re
import shutil
import tempfile

#: ``scheme://`` at the start of a URI (RFC 3986 scheme characters).
_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
#: Schemes fsspec serves from the local disk.
_LOCAL_SCHEMES = frozenset({"file", "local"})
#: Stores without an atomic folder rename: a run writes straight into its own run folder there.
OBJECT_STORES = frozenset({"s3", "s3a", "s3n", "gs", "gcs", "abfs", "abfss", "az", "wasb", "wasbs"})


def scheme(path: str) -> str:
    """The URI scheme of ``path`` in lower case, ``"file"`` for a plain path or a ``file:`` URI.

    Examples
    --------
    >>> scheme("s3://bucket/out"), scheme("S3A://bucket/out"), scheme("/data/out"), scheme("file:/data/out")
    ('s3', 's3a', 'file', 'file')
    """
    if path.startswith("file:"):
        return "file"
    match = _URI.match(path)
    return match.group(1).lower() if match else "file"


def is_remote(path: str) -> bool:
    """True if ``path`` lives outside this machine's file system (``s3://``, ``gs://``, ``hdfs://``...).

    Examples
    --------
    >>> is_remote("s3://bucket/out"), is_remote("output/demo"), is_remote("file:///data/out")
    (True, False, False)
    """
    return scheme(path) not in _LOCAL_SCHEMES


def is_object_store(path: str) -> bool:
    """True for a store without an atomic rename (``s3://``, ``gs://``, ``abfs://``...); False for disks and HDFS.

    Examples
    --------
    >>> is_object_store("s3://bucket/out"), is_object_store("hdfs://nn/out"), is_object_store("/data/out")
    (True, False, False)
    """
    return scheme(path) in OBJECT_STORES


def local_path(path: str) -> str | None:
    """The operating-system path of a local location (a ``file:`` URI unwrapped), ``None`` for a remote one.

    Examples
    --------
    >>> local_path("file:///data/out"), local_path("file:/data/out"), local_path("out"), local_path("s3://b/k")
    ('/data/out', '/data/out', 'out', None)
    """
    if is_remote(path):
        return None
    if path.startswith("file:"):
        return "/" + re.sub(r"^file:/*", "", path)
    return path


def absolute(path: str) -> str:
    """URIs (``s3://...``, ``file://...``) as given; plain local paths made absolute (``~`` expanded).

    Examples
    --------
    >>> absolute("s3://bucket/run")
    's3://bucket/run'
    >>> absolute("/data/../data/run")
    '/data/run'
    """
    if _URI.match(path) or path.startswith("file:"):
        return path
    return os.path.abspath(os.path.expanduser(path))


def filesystem(path: str):
    """``(fs, fs_path)`` for ``path``, with fsspec's listing cache cleared so what it says is current."""
    import fsspec

    fs, fs_path = fsspec.core.url_to_fs(path)
    fs.invalidate_cache()
    return fs, fs_path


def exists(path: str) -> bool:
    """True if a file or folder is at ``path`` (local or remote)."""
    fs, fs_path = filesystem(path)
    return fs.exists(fs_path)


def remove(path: str) -> None:
    """Delete the file or folder at ``path`` (local or remote) if there is one."""
    fs, fs_path = filesystem(path)
    if fs.exists(fs_path):
        fs.rm(fs_path, recursive=True)
        fs.invalidate_cache()


def open(path: str, mode: str = "rb", **kwargs):  # noqa: A001  (the module's verb, like fsspec.open)
    """Open a file, local or remote: ``with location.open("s3://b/k.json") as handle: ...``."""
    local = local_path(path)
    if local is not None:
        if any(flag in mode for flag in "wax"):
            os.makedirs(os.path.dirname(os.path.abspath(local)), exist_ok=True)
        return builtins.open(local, mode, **kwargs)
    import fsspec

    return fsspec.open(path, mode, **kwargs).open()


def read_bytes(path: str) -> bytes:
    """The whole content of a file, local or remote."""
    with open(path, "rb") as handle:
        return handle.read()


def read_json(path: str) -> dict:
    """A JSON document (a manifest, a run's record), local or remote."""
    with open(path, "r", encoding="utf-8") as handle:
        return json.load(handle)


def write_json(document: dict, path: str) -> None:
    """Write ``document`` as indented JSON, local or remote, its folder made when local."""
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2, sort_keys=False)
        handle.write("\n")


def copy(source: str, target: str) -> None:
    """Copy a file or a folder (with everything under it) from ``source`` to ``target``, each local or remote.

    ``target`` names the copy itself, not a folder to copy into.
    """
    source_local, target_local = local_path(source), local_path(target)
    if source_local is not None and target_local is not None:
        os.makedirs(os.path.dirname(os.path.abspath(target_local)), exist_ok=True)
        if os.path.isdir(source_local):
            shutil.copytree(source_local, target_local, dirs_exist_ok=True)
        else:
            shutil.copy2(source_local, target_local)
        return
    if source_local is not None:
        if os.path.isdir(source_local):
            upload(source_local, target)
        else:
            fs, fs_target = filesystem(target)
            fs.put_file(source_local, fs_target)
            fs.invalidate_cache()
        return
    fs, fs_source = filesystem(source)
    if target_local is not None:
        if fs.isdir(fs_source):
            download(source, target_local)
        else:
            os.makedirs(os.path.dirname(os.path.abspath(target_local)), exist_ok=True)
            fs.get_file(fs_source, target_local)
        return
    target_fs, fs_target = filesystem(target)
    if type(target_fs) is type(fs):  # one store: its own copy (server side on S3)
        fs.copy(fs_source, fs_target, recursive=True)
        target_fs.invalidate_cache()
        return
    files = fs.find(fs_source) if fs.isdir(fs_source) else [fs_source]
    for path in files:  # two stores: stream each file through this machine
        relative = path[len(fs_source.rstrip("/")):].lstrip("/")
        with fs.open(path, "rb") as reader, target_fs.open(
                f"{fs_target.rstrip('/')}/{relative}" if relative else fs_target, "wb") as writer:
            shutil.copyfileobj(reader, writer)
    target_fs.invalidate_cache()


def deliver(local_file: str, target: str) -> None:
    """Move a finished local file to ``target`` (local or remote); the local file is gone afterwards."""
    target_local = local_path(target)
    if target_local is not None:
        os.makedirs(os.path.dirname(os.path.abspath(target_local)) or ".", exist_ok=True)
        shutil.move(local_file, target_local)
        return
    fs, fs_target = filesystem(target)
    fs.put_file(local_file, fs_target)
    fs.invalidate_cache()
    os.unlink(local_file)


def upload(local_folder: str, target: str) -> None:
    """Copy a local folder's files to ``target`` (local or remote), file by file.

    Object by object, so a reader could see a part: only for folders nothing reads
    yet (a run folder before the pointer names it).
    """
    fs, root = filesystem(target)
    for folder, _, files in os.walk(local_folder):
        for name in files:
            path = os.path.join(folder, name)
            relative = os.path.relpath(path, local_folder).replace(os.sep, "/")
            destination = f"{root.rstrip('/')}/{relative}"
            fs.makedirs(destination.rsplit("/", 1)[0], exist_ok=True)
            fs.put_file(path, destination)
    fs.invalidate_cache()


def download(source: str, local_folder: str, *, names: tuple[str, ...] | None = None) -> str:
    """Copy the folder ``source`` (or only its entries ``names``, those that exist) into ``local_folder``.

    Returns
    -------
    str
        ``local_folder``.
    """
    fs, root = filesystem(source)
    root = root.rstrip("/")
    os.makedirs(local_folder, exist_ok=True)
    if names is None:
        names = tuple(entry.rstrip("/").rsplit("/", 1)[-1] for entry in fs.ls(root, detail=False))
    for name in names:
        entry = f"{root}/{name}"
        if not fs.exists(entry):
            continue
        target = os.path.join(local_folder, name)
        if fs.isdir(entry):
            fs.get(entry, target, recursive=True)
        else:
            fs.get_file(entry, target)
    return local_folder


def readable_copy(source: str, names: tuple[str, ...], *, prefix: str = "fruits-copy-") -> str:
    """A new temporary local folder holding ``source``'s entries ``names``: for a reader that cannot read
    ``source``'s scheme (a local pyspark has no S3 connector). The caller removes it.
    """
    return download(source, tempfile.mkdtemp(prefix=prefix), names=names)
