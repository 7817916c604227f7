"""Featurize images on Spark with the chosen engine and weights shipped from the driver."""

from __future__ import annotations

import dataclasses
import math

from fruits.engines import PreparedEngine
from fruits.featurize.batches import MAPPED_SCHEMA, make_feature_mapper, predictor_factory

#: Images per Spark partition, about, when the run does not fix the partition count. Every
#: task costs fixed work however few images it holds (measured on the Test split, onnx-int8,
#: the same session settings: featurization 62.1 s in 42 tasks against 57.3 s in 22, and
#: 77.4 against 69.9 s in 82 and 42 tasks an hour earlier), while a task of 1,024 images
#: takes only about 5 s on one core, short enough to spread and to retry.
IMAGES_PER_PARTITION = 1024


def choose_partitions(spark, image_count: int, requested: int | None) -> int:
    """Partitions for featurization: ``requested``, or whole waves of about 1,024 images a task.

    The count is a multiple of the cores (``defaultParallelism``), at least two waves,
    so that no wave leaves cores idle while the last tasks run.

    Examples
    --------
    >>> # 20,622 images on 2 cores -> 22 partitions of about 937 images (11 waves of 2)
    >>> # 2,040 images on 2 cores -> 4 partitions of 510 (2 waves)
    """
    if requested is not None:
        return requested
    parallelism = spark.sparkContext.defaultParallelism
    waves = math.ceil(image_count / (IMAGES_PER_PARTITION * parallelism))
    return max(2, waves) * parallelism


def spread_over(images_df, partitions: int):
    """Bring ``images_df`` to ``partitions`` partitions, shuffling image bytes only if needed.

    ``binaryFile`` splits a folder of small files into many partitions; merging
    them (``coalesce``) moves no data and lets each task read its files while it
    featurizes, whereas ``repartition`` pushes every image through a shuffle stage
    that must end before the first image reaches the network (measured: workers
    busy 65 % of the time instead of 73 % on 2,000 images). Both are deterministic,
    so a retried task sees the same rows.
    """
    if images_df.rdd.getNumPartitions() >= partitions:
        return images_df.coalesce(partitions)
    return images_df.repartition(partitions, "path")


def featurize(images_df, engine: PreparedEngine, *, batch_size: int, threads_per_task: int,
              partitions: int | None):
    """Featurize ``path``/``label`` rows: add ``features`` and ``error`` (:func:`fruits.featurize.batches.make_feature_mapper`).

    Parameters
    ----------
    images_df : pyspark.sql.DataFrame
        ``path``, ``label``, ``content``, and optionally ``read_error``
        (:func:`fruits.inputs.reading.read_images`): a file that could not be read
        keeps that reason as its ``error``.
    engine : PreparedEngine
        Its payload is broadcast once; every worker builds its predictor from it.
    partitions : int or None
        Spark partitions the images are spread over; ``None`` keeps ``images_df``'s own
        (:func:`fruits.inputs.reading.read_images` has spread them already).

    Returns
    -------
    pyspark.sql.DataFrame
        ``path``, ``label``, ``features`` (array<float> or null), ``error`` (null or reason).
    """
    from pyspark.sql import functions as F

    spark = images_df.sparkSession
    broadcast = spark.sparkContext.broadcast(engine.payload)
    mapper = make_feature_mapper(
        predictor_factory(engine, broadcast, threads=threads_per_task),
        cache_key=engine.cache_key(threads_per_task),
        batch_size=batch_size,
        input_size=engine.input_size,
    )
    spread = images_df if partitions is None else spread_over(images_df, partitions)
    read_error = F.col("read_error") if "read_error" in images_df.columns else F.lit(None).cast("string")
    return spread.select("path", "label", read_error.alias("read_error"), "content").mapInArrow(mapper, MAPPED_SCHEMA)


#: Parquet options for every frame holding a ``features`` column. Feature values almost never
#: repeat, so parquet-mr's dictionary encoding of them is tried and abandoned in every row group:
#: turning it off for that column alone cut the JVM's CPU time for writing 20,622 features
#: from 2.34 s to 2.06 s, the files the same size (the ``path`` and ``label`` columns keep it).
FEATURES_PARQUET_OPTIONS = {"parquet.enable.dictionary#features.list.element": "false"}

#: Schemas of ``features/`` and ``rejected/`` as a run writes them. A run reads back what it
#: has just written with these: without a schema, every ``spark.read.parquet`` first runs a
#: Spark job to read one file's footer (one job per read, 0.1-0.2 s each on local Spark, a
#: round trip to the object store on S3).
FEATURES_SCHEMA = "path string, label string, features array<float>"
REJECTED_SCHEMA = "path string, reason string"


def read_written(spark, path: str, schema: str):
    """``spark.read.parquet(path)`` of an output this run wrote, whose ``schema`` is known."""
    return spark.read.schema(schema).parquet(path)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What became of a set of images: ``features`` (path, label, features) and ``rejected`` (path, reason)."""

    features: object
    rejected: object


def featurize_and_split(images_df, engine: PreparedEngine, *, skipped, raw_path: str, batch_size: int,
                        threads_per_task: int) -> Outcome:
    """Featurize once, writing the featurization's output to ``raw_path``, and split it by outcome.

    ``images_df`` comes from :func:`fruits.inputs.reading.read_images`, already spread over
    the featurization's partitions (asking Spark how many it has would plan it once more).

    The network runs exactly once per image: both frames read the Parquet at ``raw_path``.
    ``rejected`` holds the decode failures, the files that could not be read, and
    ``skipped`` (a ``path``, ``reason`` DataFrame: files the listing set aside), so
    every file is accounted for.
    """
    from pyspark.sql import functions as F

    featurize(images_df, engine, batch_size=batch_size, threads_per_task=threads_per_task,
              partitions=None).write.options(**FEATURES_PARQUET_OPTIONS).mode("overwrite").parquet(raw_path)
    raw = read_written(images_df.sparkSession, raw_path, MAPPED_SCHEMA)
    return Outcome(
        features=raw.where(F.col("error").isNull()).select("path", "label", "features"),
        rejected=skipped.select("path", "reason").unionByName(
            raw.where(F.col("error").isNotNull()).select("path", F.col("error").alias("reason"))),
    )
