"""Read the listed images with Spark's ``binaryFile`` source and attach their labels.

Spark lists the input folder again (on EMR this is a distributed S3 listing); its
rows are matched to the driver's :class:`~fruits.listing.Listing` by path, which
gives each image its label and exposes any listed image Spark did not read, so it
can be reported instead of vanishing.
"""

from __future__ import annotations

import re

from typing import Sequence

from fruits.listing import InputFile

#: Glob for ``pathGlobFilter``: the image extensions in any case.
IMAGE_GLOB = "*.{[jJ][pP][gG],[jJ][pP][eE][gG],[pP][nN][gG]}"

NOT_READ_BY_SPARK = "listed, but not read by Spark's binaryFile source"

_LOCAL_SCHEME = re.compile(r"^file:(//)?")


def spark_location(path: str) -> str:
    """The form Spark should load: URIs as given, local paths as ``file://`` URIs."""
    return path if "://" in path else f"file://{path}"


def match_key(path: str) -> str:
    """Normalise a path so Spark's form and the listing's form compare equal.

    Examples
    --------
    >>> match_key("file:/data/Test/Apple Braeburn/1_100.jpg")
    '/data/Test/Apple Braeburn/1_100.jpg'
    >>> match_key("s3://bucket/Test/Kiwi/2_100.jpg")
    's3://bucket/Test/Kiwi/2_100.jpg'
    """
    return _LOCAL_SCHEME.sub("", path) if path.startswith("file:") else path


def spark_can_access(spark, path: str) -> bool:
    """True if Spark's Hadoop layer has a file system for ``path``'s scheme.

    EMR reads ``s3://`` natively; a local pyspark wheel has no S3 connector, and then
    the library reads and writes S3 itself (fsspec/s3fs) instead of failing.
    """
    if "://" not in path or path.startswith("file:"):
        return True
    scheme = path.split("://", 1)[0]
    jvm = spark.sparkContext._jvm
    try:
        jvm.org.apache.hadoop.fs.FileSystem.getFileSystemClass(scheme, spark.sparkContext._jsc.hadoopConfiguration())
    except Exception:  # py4j wraps UnsupportedFileSystemException
        return False
    return True


def _fetch_contents(batches):
    """mapInPandas body: read each file's bytes with fsspec (None when it cannot be read)."""
    import fsspec

    for frame in batches:
        contents = []
        for path in frame["path"]:
            try:
                with fsspec.open(path, "rb") as handle:
                    contents.append(handle.read())
            except Exception:  # a vanished object or a denied read becomes a recorded rejection
                contents.append(None)
        yield frame.assign(content=contents)


def read_images(spark, root: str, wanted: Sequence[InputFile]):
    """Load the ``wanted`` images under ``root`` as ``path``, ``label``, ``content`` rows.

    Parameters
    ----------
    spark : pyspark.sql.SparkSession
    root : str
        The input folder, as listed.
    wanted : sequence of InputFile
        The images to read (all of the listing's, or the new ones of an incremental run).

    Returns
    -------
    tuple
        ``(images_df, not_read)``: the DataFrame (``path`` in the listing's form) and
        the list of ``(path, reason)`` for listed images that Spark did not return.
    """
    from pyspark.sql import functions as F

    if not spark_can_access(spark, root):
        listed = spark.createDataFrame([(i.path, i.label) for i in wanted], "path string, label string")
        partitions = max(1, min(len(wanted) // 64 + 1, 4 * spark.sparkContext.defaultParallelism))
        fetched = listed.repartition(partitions).mapInPandas(
            _fetch_contents, "path string, label string, content binary")
        return fetched, []
    raw = (
        spark.read.format("binaryFile")
        .option("recursiveFileLookup", "true")
        .option("pathGlobFilter", IMAGE_GLOB)
        .load(spark_location(root))
        .withColumn("key", F.regexp_replace("path", _LOCAL_SCHEME.pattern, ""))
    )
    labels = spark.createDataFrame(
        [(match_key(image.path), image.path, image.label) for image in wanted],
        "key string, listed_path string, label string",
    )
    images = raw.join(F.broadcast(labels), "key", "inner").select(
        F.col("listed_path").alias("path"), "label", "content"
    )
    missing = labels.join(raw.select("key"), "key", "left_anti").select("listed_path").collect()
    not_read = [(row.listed_path, NOT_READ_BY_SPARK) for row in missing]
    return images, not_read
