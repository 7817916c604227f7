"""Featurize images on Spark with the chosen engine and weights shipped from the driver."""

from __future__ import annotations

import functools
import math

from fruits.models import keras_predictor
from fruits.preprocess import INPUT_SIZE
from fruits.udf import make_feature_udf
from fruits.weights import ResolvedWeights

#: Images per Spark partition when the run does not fix the partition count: enough
#: to amortise task overhead, small enough to spread over every core.
IMAGES_PER_PARTITION = 256


def _keras_from_broadcast(broadcast, threads: int, input_size: int):
    """Runs in a worker: read the broadcast weights and build the Keras predictor."""
    return keras_predictor(broadcast.value, threads=threads, input_size=input_size)


def choose_partitions(spark, image_count: int, requested: int | None) -> int:
    """Partitions for featurization: ``requested``, or enough to keep every core busy.

    Examples
    --------
    >>> # 20,622 images on 2 cores -> 81 partitions of about 256 images
    """
    if requested is not None:
        return requested
    parallelism = spark.sparkContext.defaultParallelism
    return max(2 * parallelism, math.ceil(image_count / IMAGES_PER_PARTITION))


def featurize(images_df, weights: ResolvedWeights, *, engine: str, batch_size: int,
              threads_per_task: int, partitions: int, input_size: int = INPUT_SIZE):
    """Add the UDF's ``features`` and ``error`` columns to ``path``/``label`` rows.

    Parameters
    ----------
    images_df : pyspark.sql.DataFrame
        ``path``, ``label``, ``content``.
    weights : ResolvedWeights
        Broadcast once; every worker builds its predictor from these arrays.
    engine : str
        ``"keras"``.
    partitions : int
        Spark partitions the images are spread over.

    Returns
    -------
    pyspark.sql.DataFrame
        ``path``, ``label``, ``features`` (array<float> or null), ``error`` (null or reason).
    """
    if engine != "keras":
        raise ValueError(f"engine must be 'keras', got {engine!r}")
    spark = images_df.sparkSession
    broadcast = spark.sparkContext.broadcast(list(weights.arrays))
    factory = functools.partial(_keras_from_broadcast, broadcast, threads_per_task, input_size)
    udf = make_feature_udf(
        factory,
        cache_key=f"{engine}:{weights.sha256}:{input_size}:{threads_per_task}",
        batch_size=batch_size,
        input_size=input_size,
    )
    # Hash on path: deterministic, so a retried task sees the same rows.
    spread = images_df.repartition(partitions, "path")
    result = spread.select("path", "label", udf("content").alias("result"))
    return result.select("path", "label", "result.features", "result.error")
