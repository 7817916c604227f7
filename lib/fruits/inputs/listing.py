"""List what the user gave: cheap checks on the driver, the listing itself on the executors.

Spark's file sources silently skip names that start with ``.`` or ``_`` and never
hand a 0-byte file to a task; neither tells the user what it left out. So the run
lists the input itself, in two steps:

:func:`check_input` (driver, before Spark)
    the input exists, is a folder and is not empty, or :class:`InputError` with the
    reason; it lists the top level only, so the driver's cost is the number of class
    folders, not the number of images.
:func:`list_files` (executors)
    one Spark task per group of top-level folders walks them with fsspec in the
    Python workers and returns one row per file (:data:`LISTING_SCHEMA`): path, size,
    modified, label, and the reason the file is skipped (``null`` for an image). The
    rows are written once, as Parquet, into the run's scratch folder: every count of
    the run reconciles against that one snapshot, and the driver only ever collects
    aggregates (images per label).

Why fsspec in the Python workers rather than Hadoop's ``FileSystem``: a Python
worker cannot call the JVM, so a Hadoop listing would run on the driver's JVM (or
Spark's own file index, which brings every file status back to the driver and drops
hidden and empty files without a word). fsspec lists ``s3://`` (s3fs, boto3's
credential chain: the instance profile on EMR) whether or not Spark has an S3
connector, and reports every file, hidden or empty; local folders are read with
``os.scandir`` by the same rules (3.2x faster than fsspec's ``find`` on 50,000 files,
which builds a ten-field dictionary per file). EMR's executors then need ``s3fs``
(the ``aws`` extra) for ``s3://`` inputs.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import posixpath
from typing import Iterator

from fruits.spark.jobs import job_description
from fruits.storage import location

#: File extensions (lower-cased) that are read as images.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")

#: Label given to images that sit directly in the input folder, outside any class folder.
UNLABELLED = "unlabelled"

#: One row per file given: ``reason`` is ``null`` for an image, else why it is skipped.
LISTING_SCHEMA = "path string, size long, modified double, label string, reason string"

#: Reasons a listed file is not read (the text before ``:`` groups ``rejected_by_reason``).
HIDDEN = "hidden or system file (name starts with '.' or '_')"
NOT_AN_IMAGE = f"not an image file name (expected {', '.join(IMAGE_EXTENSIONS)})"
EMPTY = "empty file (0 bytes)"

#: Rows per pandas frame a listing task hands back to Spark: bounds a worker's memory.
_ROWS_PER_FRAME = 10_000


class InputError(ValueError):
    """The input location is missing, unreachable or holds no images."""


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


def skip_reason(path: str, size: int) -> str | None:
    """Why the file at ``path`` is not read as an image, or ``None`` for an image.

    Examples
    --------
    >>> skip_reason("/in/Kiwi/a.JPG", 1200) is None
    True
    >>> skip_reason("/in/Kiwi/._a.jpg", 1200)
    "hidden or system file (name starts with '.' or '_')"
    >>> skip_reason("/in/Kiwi/a.jpg", 0)
    'empty file (0 bytes)'
    """
    name = posixpath.basename(path)
    if name.startswith((".", "_")):
        return HIDDEN
    if posixpath.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
        return NOT_AN_IMAGE
    if size == 0:
        return EMPTY  # Spark's file sources never hand 0-byte files to a task: record them here
    return None


@dataclasses.dataclass(frozen=True)
class InputRoot:
    """An input folder that passed the driver's checks, and how its listing is split into tasks.

    ``folders`` are the top-level folders (fsspec paths, without scheme), each walked
    by one listing task; ``has_loose_files`` says whether files sit directly in the
    root, which one more task lists.
    """

    root: str
    protocol: str
    fs_root: str
    folders: tuple[str, ...]
    has_loose_files: bool

    @property
    def remote(self) -> bool:
        """True for object stores and other non-local file systems (paths keep their scheme)."""
        return location.is_remote(self.root)

    @property
    def walks(self) -> list[tuple[str, bool]]:
        """``(folder, recursive)`` to list: each class folder whole, then the root's own files if any."""
        walks = [(folder, True) for folder in self.folders]
        if self.has_loose_files:
            walks.append((self.fs_root, False))
        return walks

    def user_path(self, fs_path: str) -> str:
        """The path as runs record it: ``s3://bucket/key`` keeps its scheme, local paths have none."""
        return f"{self.protocol}://{fs_path}" if self.remote else fs_path


def check_input(root: str) -> InputRoot:
    """Check cheaply, on the driver, that ``root`` is a folder holding something.

    Lists the top level only (the class folders): the driver's time and memory do
    not grow with the number of images.

    Parameters
    ----------
    root : str
        Local folder or fsspec URL (``s3://bucket/prefix``).

    Raises
    ------
    InputError
        The folder cannot be opened or listed, does not exist, is a file, or is empty.
    """
    try:
        fs, fs_root = location.filesystem(root)
    except Exception as exc:  # unknown protocol, missing s3fs, bad URL
        raise InputError(f"input_path {root!r} cannot be opened: {exc}") from exc
    try:
        if not fs.exists(fs_root):
            raise InputError(f"input_path {root!r} does not exist")
        if fs.isfile(fs_root):
            raise InputError(f"input_path {root!r} is a file; give the folder that holds the images")
        top = fs.ls(fs_root, detail=True)
    except InputError:
        raise
    except Exception as exc:  # network, credentials, permissions
        raise InputError(f"input_path {root!r} cannot be listed: {type(exc).__name__}: {exc}") from exc
    base = fs_root.rstrip("/")
    entries = [entry for entry in top if entry["name"].rstrip("/") != base]  # some stores list the prefix itself
    if not entries:
        raise InputError(f"input_path {root!r} is empty: it holds no files")
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    folders = sorted(entry["name"].rstrip("/") for entry in entries if entry.get("type") == "directory")
    return InputRoot(root=root, protocol=protocol, fs_root=base, folders=tuple(folders),
                     has_loose_files=len(folders) < len(entries))


def count_local_files(source: InputRoot, limit: int) -> int | None:
    """Files under a local ``source``, counted until ``limit`` (then ``limit``); ``None`` for a remote one.

    For choices that only need to know whether an input is small (the JIT of a short
    run's JVM): the driver walks at most ``limit`` files, whatever the input's size. It
    counts what :func:`list_files` lists (hidden, empty and non-image files too), so it
    does not replace the listing. A folder it cannot read also gives ``None``: the count
    is a hint, and the listing reports that folder as it always did.
    """
    if source.remote:
        return None
    files = itertools.chain.from_iterable(_local_files(folder, recursive) for folder, recursive in source.walks)
    try:
        return sum(1 for _ in itertools.islice(files, max(0, limit)))
    except OSError:  # unreadable folder: not this function's to report
        return None


@dataclasses.dataclass(frozen=True)
class Listing:
    """The materialised listing of one input: where its Parquet is, and its aggregate counts.

    ``frame`` reads the snapshot back (:data:`LISTING_SCHEMA`); the counts were
    aggregated by Spark from that same snapshot, so they reconcile with every
    DataFrame derived from it.
    """

    root: str
    location: str
    frame: object = dataclasses.field(repr=False, compare=False)
    total: int
    classes: dict

    @property
    def image_count(self) -> int:
        """Files that will be read as images."""
        return sum(self.classes.values())

    @property
    def skipped_count(self) -> int:
        """Files set aside by name or size (hidden, not an image name, 0 bytes)."""
        return self.total - self.image_count

    def images(self):
        """``path``, ``size``, ``modified``, ``label`` of the files read as images."""
        from pyspark.sql import functions as F

        return self.frame.where(F.col("reason").isNull()).select("path", "size", "modified", "label")

    def skipped(self):
        """``path``, ``reason`` of the files set aside (the rows of ``rejected/`` they become)."""
        from pyspark.sql import functions as F

        return self.frame.where(F.col("reason").isNotNull()).select("path", "reason")


def list_files(spark, source: InputRoot, location: str) -> Listing:
    """List every file under ``source`` on the executors and write the listing to ``location``.

    Parameters
    ----------
    spark : pyspark.sql.SparkSession
    source : InputRoot
        From :func:`check_input`.
    location : str
        Parquet folder for the snapshot (the run's scratch folder), overwritten.

    Returns
    -------
    Listing

    Raises
    ------
    InputError
        A folder cannot be listed, the input holds no file at all (only empty
        folders), or no file is an image: before any image is read.
    """
    from pyspark.sql import functions as F

    tasks = source.walks
    slices = max(1, min(len(tasks), 4 * spark.sparkContext.defaultParallelism))
    # Task numbers from the JVM, the tasks themselves in the lister's closure: no Python RDD
    # (whose rows a second Python worker per task would pickle), no rows sent from the driver.
    work = spark.range(0, len(tasks), 1, numPartitions=slices)
    with job_description(spark, f"fruits: list {source.root}"):  # the step's label is back afterwards
        try:
            work.mapInPandas(_folder_lister(source, tasks), LISTING_SCHEMA).write.mode("overwrite").parquet(location)
        except Exception as exc:  # a folder that cannot be listed fails its task: the run stops here
            raise InputError(f"input_path {source.root!r} cannot be listed: {_first_line(exc)}") from exc
        frame = spark.read.schema(LISTING_SCHEMA).parquet(location)  # known: no job to read it from a footer
        by_label = (frame.groupBy("label").agg(F.count(F.lit(1)).alias("files"),
                                               F.count(F.when(F.col("reason").isNull(), 1)).alias("images"))
                    .collect())
    total = sum(row.files for row in by_label)
    classes = dict(sorted((row.label, row.images) for row in by_label if row.images))
    listing = Listing(root=source.root, location=location, frame=frame, total=total, classes=classes)
    if total == 0:
        raise InputError(f"input_path {source.root!r} is empty: it holds no files")
    if not classes:
        first = listing.skipped().orderBy("path").first()
        raise InputError(
            f"input_path {source.root!r} holds {total} file(s) but no readable image "
            f"({', '.join(IMAGE_EXTENSIONS)}, any case); first: {first.path} ({first.reason})"
        )
    return listing


def spread_sample(frame, *, per_label: int = 4, seed: int = 0) -> list:
    """At most ``per_label`` rows (``path``, ``label``) of each label, picked in Spark: a small varied sample.

    For a grid of example images (:func:`fruits.report.explore.sample_images`) from a
    listing's images or a run's ``features/``, without collecting every path.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if per_label < 1:
        raise ValueError(f"per_label must be at least 1, got {per_label!r}")
    order = Window.partitionBy("label").orderBy(F.xxhash64("path", F.lit(seed)), "path")
    ranked = frame.select("path", "label").withColumn("_rank", F.row_number().over(order))
    return ranked.where(F.col("_rank") <= per_label).drop("_rank").orderBy("label", "path").collect()


def _folder_lister(source: InputRoot, tasks: list[tuple[str, bool]]):
    """The mapInPandas body listing folders on an executor (a closure over small, picklable values).

    Its input rows are task numbers (``id``); task ``i`` is ``tasks[i]``: a folder and
    whether to list it recursively (class folders) or only its own files (the root).
    """
    root, protocol, base, remote = source.root, source.protocol, source.fs_root, source.remote

    def list_folders(batches: Iterator) -> Iterator:
        import pandas as pd

        fs = location.filesystem(root)[0] if remote else None
        rows: list[tuple] = []
        for numbers in batches:
            for folder, recursive in (tasks[number] for number in numbers["id"]):
                files = _remote_files(fs, folder, recursive) if remote else _local_files(folder, recursive)
                for path, size, modified in files:
                    if path.rstrip("/") == base:
                        continue
                    rows.append((f"{protocol}://{path}" if remote else path, size, modified,
                                 label_for(path, base), skip_reason(path, size)))
                    if len(rows) >= _ROWS_PER_FRAME:
                        yield pd.DataFrame(rows, columns=_COLUMNS)
                        rows = []
        if rows:
            yield pd.DataFrame(rows, columns=_COLUMNS)

    return list_folders


_COLUMNS = ["path", "size", "modified", "label", "reason"]


def _remote_files(fs, folder: str, recursive: bool) -> Iterator[tuple[str, int, float | None]]:
    """``(path, size, modified)`` of the files in ``folder`` on a remote store (fsspec; its pages of keys)."""
    entries = fs.find(folder, detail=True).items() if recursive else (
        (entry["name"], entry) for entry in fs.ls(folder, detail=True))
    for path, info in entries:
        if info.get("type") != "directory":
            yield path, int(info.get("size") or 0), _mtime(info)


def _local_files(folder: str, recursive: bool) -> Iterator[tuple[str, int, float | None]]:
    """``(path, size, modified)`` of the files in a local ``folder``, as fsspec's ``find`` reports them.

    ``os.scandir`` directly: fsspec builds a dictionary of ten fields per file, which
    made the listing of a million local files about three times slower. Same rules:
    a symbolic link is a file (never followed into), sized by its target; a file
    that vanishes while the folder is read is not listed.
    """
    pending = [folder]
    while pending:
        try:
            with os.scandir(pending.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            if recursive:
                                pending.append(entry.path)
                            continue
                        stat = entry.stat(follow_symlinks=False)
                        size = stat.st_size
                        if entry.is_symlink():
                            try:
                                size = entry.stat(follow_symlinks=True).st_size
                            except OSError:
                                size = 0
                        yield entry.path, size, float(stat.st_mtime)
                    except FileNotFoundError:
                        continue
        except FileNotFoundError:
            continue


def _mtime(info: dict) -> float | None:
    value = info.get("mtime", info.get("LastModified"))
    if value is None:
        return None
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    return float(value)


def _first_line(exc: Exception) -> str:
    """The Python error a failed task raised, without the JVM stack trace around it."""
    text = str(exc)
    for line in text.splitlines():
        if "Error:" in line and not line.lstrip().startswith(("at ", "File ")):
            return line.strip()
    return text.splitlines()[0] if text else type(exc).__name__
