"""Read the listed images' bytes on the executors, straight from the listing's rows.

The listing (:mod:`fruits.inputs.listing`) already says which files are images; a
second listing by Spark's ``binaryFile`` source and a driver-side join to match it
would cost the driver time and memory per image. Here the listing's rows, which
hold no image bytes, are spread over the featurization's partitions first (a
shuffle of paths only); each task then reads its files with fsspec and hands the
bytes to the featurization UDF in the same stage: no image byte is shuffled.

A file that cannot be read (it vanished after the listing, access denied) gets a
``read_error`` instead of bytes; the featurization records it in ``rejected/``
with that reason, so it is counted like any other rejection.
"""

from __future__ import annotations

from typing import Iterator

from fruits.storage import location

#: Reason of a listed image whose bytes could not be read (followed by ``: <error>``).
NOT_READ = "listed, but could not be read"

#: Schema of :func:`read_images`'s rows.
IMAGES_SCHEMA = "path string, label string, content binary, read_error string"

#: Bytes a read batch holds at most (one file may exceed it): bounds a worker's memory
#: whatever the Arrow batch size, even for 12-megapixel photos.
READ_BATCH_BYTES = 64 * 1024 * 1024

#: Concurrent reads per task on an object store, where each read is a round trip. Few: four
#: round trips in flight (each about 20-50 ms for a Fruits-360 JPEG) outpace one core's
#: featurization (40-80 images/s), and every thread reserves address space (an 8 MiB stack,
#: possibly a malloc arena) inside the Python worker's RLIMIT_AS, which the onnx-int8 engine
#: already nears (2291 of 2432 MiB on EMR's sizing, see docs/emr.md's executor sizing).
REMOTE_READ_THREADS = 4


def read_images(images_df, *, partitions: int):
    """Spread the listed images over ``partitions`` and read their bytes there.

    Parameters
    ----------
    images_df : pyspark.sql.DataFrame
        ``path``, ``size``, ``label`` rows (:meth:`fruits.inputs.listing.Listing.images`,
        or the new images of an incremental run).
    partitions : int
        Partitions of the featurization; the repartition moves listing rows only.

    Returns
    -------
    pyspark.sql.DataFrame
        :data:`IMAGES_SCHEMA`: ``content`` is ``null`` and ``read_error`` says why
        when the file could not be read.
    """
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, got {partitions!r}")
    listed = images_df.select("path", "label", "size").repartition(partitions, "path")
    return listed.mapInPandas(_read_batches, IMAGES_SCHEMA)


def _read_batches(batches: Iterator) -> Iterator:
    """mapInPandas body: the bytes of each listed file, in frames of at most :data:`READ_BATCH_BYTES`."""
    for frame in batches:
        start = 0
        while start < len(frame):
            stop, held = start, 0
            while stop < len(frame) and (stop == start or held + int(frame["size"].iat[stop]) <= READ_BATCH_BYTES):
                held += int(frame["size"].iat[stop])
                stop += 1
            chunk = frame.iloc[start:stop]
            contents, errors = read_files(list(chunk["path"]))
            yield chunk[["path", "label"]].assign(content=contents, read_error=errors)
            start = stop


def read_files(paths: list[str]) -> tuple[list[bytes | None], list[str | None]]:
    """Read ``paths`` (local or fsspec URLs): bytes, or ``None`` and the reason, for each.

    Examples
    --------
    >>> contents, errors = read_files(["/no/such/file.jpg"])
    >>> contents, errors[0].split(":")[0]
    ([None], 'listed, but could not be read')
    """
    if not paths:
        return [], []
    if location.is_remote(paths[0]):
        import concurrent.futures

        fs = location.filesystem(paths[0])[0]
        with concurrent.futures.ThreadPoolExecutor(REMOTE_READ_THREADS) as pool:
            outcomes = list(pool.map(lambda path: _attempt(fs.cat_file, path), paths))
    else:
        outcomes = [_attempt(_read_local, location.local_path(path)) for path in paths]
    return [content for content, _ in outcomes], [error for _, error in outcomes]


def _read_local(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _attempt(read, path: str) -> tuple[bytes | None, str | None]:
    try:
        return read(path), None
    except Exception as exc:  # a vanished object or a denied read becomes a recorded rejection
        return None, f"{NOT_READ}: {type(exc).__name__}: {str(exc)[:200]}"


def spark_can_access(spark, path: str) -> bool:
    """True if Spark's Hadoop layer has a file system for ``path``'s scheme.

    EMR reads and writes ``s3://`` natively; a local pyspark wheel has no S3 connector,
    and then a run writes its outputs through a local mirror (:mod:`fruits.storage.staged`).
    Inputs never need it: the executors read them with fsspec.
    """
    if not location.is_remote(path):
        return True
    jvm = spark.sparkContext._jvm
    try:
        jvm.org.apache.hadoop.fs.FileSystem.getFileSystemClass(location.scheme(path),
                                                               spark.sparkContext._jsc.hadoopConfiguration())
    except Exception:  # py4j wraps UnsupportedFileSystemException
        return False
    return True
