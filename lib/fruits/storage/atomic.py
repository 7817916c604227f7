"""Small objects changed in one atomic step, on a local disk and on S3.

The output lease (:mod:`fruits.storage.lease`) and the current-run pointer
(:mod:`fruits.storage.publish`) need three operations that another writer cannot
interleave with:

- **create** an object only if its name is free;
- **replace** it only if it is still the version we read;
- **delete** it only if it is still the version we read.

S3 offers exactly these as conditional requests: ``PutObject`` with
``If-None-Match: *`` and with ``If-Match: <ETag>``, ``DeleteObject`` with
``If-Match: <ETag>`` (a ``412 Precondition Failed`` or ``409
ConditionalRequestConflict`` means another writer won). A local (or NFS) disk
offers an exclusive ``link(2)`` (it fails when the name exists, like
``O_EXCL``) and an atomic ``rename(2)``; a short ``flock`` on the folder makes
read-compare-replace one step. A reader never takes a lock: it sees the whole
previous or the whole new object, because objects are only ever put in place
whole (S3) or renamed into place (disk).

Every version carries a token: S3's ETag, or the SHA-256 of the bytes on disk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import os
import time
import uuid

#: How long a local compare-and-replace waits for another process's (microseconds-long) turn.
LOCK_WAIT_SECONDS = 30.0


@dataclasses.dataclass(frozen=True)
class Version:
    """One version of a small object: its bytes and the token a conditional write must name."""

    data: bytes
    token: str


def read(url: str) -> Version | None:
    """The object at ``url`` (local path or ``s3://``), or ``None`` if there is none."""
    store, path = _store(url)
    return store.read(path)


def create(url: str, data: bytes) -> str | None:
    """Write ``data`` at ``url`` only if nothing is there; its token, or ``None`` if the name was taken."""
    store, path = _store(url)
    return store.create(path, data)


def replace(url: str, data: bytes, token: str) -> str | None:
    """Write ``data`` over the version ``token``; the new token, or ``None`` if it changed or is gone."""
    store, path = _store(url)
    return store.replace(path, data, token)


def delete(url: str, token: str) -> bool:
    """Delete the object if it is still the version ``token``; ``False`` if it changed or is gone."""
    store, path = _store(url)
    return store.delete(path, token)


def _store(url: str):
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
    if protocols & {"file", "local"}:
        return _LocalStore(), path
    if protocols & {"s3", "s3a"}:
        return _S3Store(fs), path
    raise ValueError(f"no atomic conditional write for {url!r}: use a local path or s3:// (got {sorted(protocols)})")


# --- local disk ---------------------------------------------------------------------------------

class _LocalStore:
    def read(self, path: str) -> Version | None:
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            return None
        return Version(data, _digest(data))

    def create(self, path: str, data: bytes) -> str | None:
        folder = os.path.dirname(path) or "."
        os.makedirs(folder, exist_ok=True)
        with _folder_lock(folder):
            temporary = self._write_temporary(folder, path, data)
            try:
                os.link(temporary, path)  # fails if the name exists, like O_CREAT | O_EXCL
            except FileExistsError:
                return None
            except OSError as exc:  # a file system without hard links: O_EXCL, still under the lock
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                    raise
                try:
                    descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    return None
                with os.fdopen(descriptor, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
            finally:
                os.unlink(temporary)
        return _digest(data)

    def replace(self, path: str, data: bytes, token: str) -> str | None:
        folder = os.path.dirname(path) or "."
        with _folder_lock(folder):
            current = self.read(path)
            if current is None or current.token != token:
                return None
            os.replace(self._write_temporary(folder, path, data), path)
        return _digest(data)

    def delete(self, path: str, token: str) -> bool:
        folder = os.path.dirname(path) or "."
        with _folder_lock(folder):
            current = self.read(path)
            if current is None or current.token != token:
                return False
            os.unlink(path)
        return True

    @staticmethod
    def _write_temporary(folder: str, path: str, data: bytes) -> str:
        temporary = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex[:8]}.tmp")
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        return temporary


@contextlib.contextmanager
def _folder_lock(folder: str, *, timeout: float = LOCK_WAIT_SECONDS):
    """Exclusive ``flock`` on the folder itself for one compare-and-replace.

    The kernel drops it when the process dies, so a crash can never leave it held.
    """
    import fcntl

    descriptor = os.open(folder, os.O_RDONLY)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"another process kept {folder} locked for {timeout:.0f} s") from None
                time.sleep(0.01)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- S3 -----------------------------------------------------------------------------------------

#: Answers meaning "another writer got there first" (412), or "one is writing right now" (409).
_LOST_RACE = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}


class _S3Store:
    """Conditional requests through s3fs's own client, so endpoint and credentials match the data's."""

    def __init__(self, fs):
        self.fs = fs

    def read(self, path: str) -> Version | None:
        from fsspec.asyn import sync

        bucket, key = self._split(path)

        async def get():
            response = await self.fs._call_s3("get_object", Bucket=bucket, Key=key)
            body = response["Body"]
            try:
                data = await body.read()
            finally:
                body.close()
            return data, response["ETag"]

        try:
            data, etag = sync(self.fs.loop, get)
        except FileNotFoundError:
            return None
        return Version(data, etag)

    def create(self, path: str, data: bytes) -> str | None:
        return self._put(path, data, IfNoneMatch="*")

    def replace(self, path: str, data: bytes, token: str) -> str | None:
        return self._put(path, data, IfMatch=token)

    def delete(self, path: str, token: str) -> bool:
        bucket, key = self._split(path)
        try:
            self.fs.call_s3("delete_object", Bucket=bucket, Key=key, IfMatch=token)
        except (FileNotFoundError, OSError) as exc:
            if isinstance(exc, FileNotFoundError) or _lost_race(exc):
                return False
            raise
        finally:
            self.fs.invalidate_cache(path)
        return True

    def _put(self, path: str, data: bytes, **condition) -> str | None:
        bucket, key = self._split(path)
        try:
            response = self.fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, **condition)
        except (FileNotFoundError, OSError) as exc:  # s3fs translates botocore's ClientError
            if isinstance(exc, (FileNotFoundError, FileExistsError)) or _lost_race(exc):
                return None
            raise
        finally:
            self.fs.invalidate_cache(path)
        return response["ETag"]

    def _split(self, path: str) -> tuple[str, str]:
        bucket, key, _ = self.fs.split_path(path)
        return bucket, key


def _lost_race(exc: BaseException) -> bool:
    """True if ``exc`` (or the botocore error s3fs translated into it) is a 412 or 409."""
    seen = exc
    while seen is not None:
        response = getattr(seen, "response", None)
        if isinstance(response, dict):
            error = response.get("Error", {})
            status = str(response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            if str(error.get("Code")) in _LOST_RACE or status in ("412", "409"):
                return True
        seen = seen.__cause__ or seen.__context__
    return False
