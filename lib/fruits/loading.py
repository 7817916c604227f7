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
