"""List what the user gave, on the driver, before Spark starts.

Spark's file listing silently skips names that start with ``.`` or ``_`` and its
``binaryFile`` source reads whatever matches a glob; neither tells the user what it
left out. Listing here first lets a run (a) refuse a missing or empty input before
any Spark job, (b) count every file the user gave, and (c) record each file that
will not be featurized, with the reason.

Works for local folders and any fsspec URL (``s3://`` through s3fs).
"""

from __future__ import annotations

import dataclasses
import posixpath
from typing import Iterable

#: File extensions (lower-cased) that are read as images.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")

#: Label given to images that sit directly in the input folder, outside any class folder.
UNLABELLED = "unlabelled"


class InputError(ValueError):
    """The input location is missing, unreachable or holds no images."""


@dataclasses.dataclass(frozen=True)
class InputFile:
    """One file found under the input folder."""

    path: str
    size: int
    modified: float | None
    label: str

    @property
    def is_image(self) -> bool:
        """True when the extension is one the pipeline reads (any case)."""
        return posixpath.splitext(self.path)[1].lower() in IMAGE_EXTENSIONS


@dataclasses.dataclass(frozen=True)
class Listing:
    """Every file under ``root``: images to featurize and files skipped, with reasons."""

    root: str
    images: tuple[InputFile, ...]
    skipped: tuple[tuple[str, str], ...]

    @property
    def total(self) -> int:
        """Number of files the user gave."""
        return len(self.images) + len(self.skipped)

    def labels(self) -> dict[str, int]:
        """Images per label, sorted by label."""
        counts: dict[str, int] = {}
        for image in self.images:
            counts[image.label] = counts.get(image.label, 0) + 1
        return dict(sorted(counts.items()))


def label_for(path: str, root: str) -> str:
    """Class label of ``path``: its parent folder's name, or :data:`UNLABELLED` at the root.

    Examples
    --------
    >>> label_for("/data/Test/Apple Braeburn/r_1_100.jpg", "/data/Test")
    'Apple Braeburn'
    >>> label_for("/data/Test/loose.jpg", "/data/Test")
    'unlabelled'
    """
    parent = posixpath.dirname(path.rstrip("/"))
    if parent.rstrip("/") == root.rstrip("/"):
        return UNLABELLED
    return posixpath.basename(parent)


def list_inputs(root: str) -> Listing:
    """List every file under ``root`` recursively and sort images from the rest.

    Parameters
    ----------
    root : str
        Local folder or fsspec URL (``s3://bucket/prefix``).

    Returns
    -------
    Listing
        Paths are absolute and in the URL form Spark uses (``s3://...`` keeps its
        scheme, local paths have none).

    Raises
    ------
    InputError
        The folder does not exist, cannot be reached, is a file, or holds no image.
    """
    import fsspec

    try:
        fs, fs_root = fsspec.core.url_to_fs(root)
    except Exception as exc:  # unknown protocol, missing s3fs, bad URL
        raise InputError(f"input_path {root!r} cannot be opened: {exc}") from exc
    try:
        if not fs.exists(fs_root):
            raise InputError(f"input_path {root!r} does not exist")
        if fs.isfile(fs_root):
            raise InputError(f"input_path {root!r} is a file; give the folder that holds the images")
        found = fs.find(fs_root, detail=True)
    except InputError:
        raise
    except Exception as exc:  # network, credentials, permissions
        raise InputError(f"input_path {root!r} cannot be listed: {type(exc).__name__}: {exc}") from exc
    return _classify(root, fs, fs_root, found.items())


def _classify(root: str, fs, fs_root: str, entries: Iterable) -> Listing:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    remote = protocol not in ("file", "local")
    base = fs_root.rstrip("/")

    def user_path(path: str) -> str:
        return f"{protocol}://{path}" if remote else path

    images: list[InputFile] = []
    skipped: list[tuple[str, str]] = []
    for path, info in sorted(entries):
        if info.get("type") == "directory":
            continue
        item = InputFile(
            path=user_path(path),
            size=int(info.get("size") or 0),
            modified=_mtime(info),
            label=label_for(path, base),
        )
        name = posixpath.basename(path)
        if name.startswith((".", "_")):
            skipped.append((item.path, "hidden or system file (name starts with '.' or '_')"))
        elif not item.is_image:
            skipped.append(
                (item.path, f"not an image file name (expected {', '.join(IMAGE_EXTENSIONS)})")
            )
        elif item.size == 0:
            # Spark's file sources never hand 0-byte files to a task: record them here.
            skipped.append((item.path, "empty file (0 bytes)"))
        else:
            images.append(item)
    if not images and not skipped:
        raise InputError(f"input_path {root!r} is empty: it holds no files")
    if not images:
        raise InputError(
            f"input_path {root!r} holds {len(skipped)} file(s) but no readable image "
            f"({', '.join(IMAGE_EXTENSIONS)}, any case); first: {skipped[0][0]} ({skipped[0][1]})"
        )
    return Listing(root=root, images=tuple(images), skipped=tuple(skipped))


def _mtime(info: dict) -> float | None:
    value = info.get("mtime", info.get("LastModified"))
    if value is None:
        return None
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    return float(value)
