"""The pandas UDF that featurizes images: batching, a per-worker model cache, type conversion.

The study rebuilt MobileNetV2 at the start of every task. Spark reuses its Python
workers across tasks (``spark.python.worker.reuse``, on by default), so a predictor
kept in a module-level cache is built once per worker process and serves every
later batch and task that the worker runs.

Each image yields either a feature vector or a recorded reason, never an exception
that would kill the task: one corrupt file must not fail an hour-long run.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from fruits import engines
from fruits.engines import Engine, Predict, PreparedEngine
from fruits.preprocess import INPUT_SIZE, ImageDecodeError, decode_and_resize

#: Spark type the UDF returns: features, or null features and the reason.
RESULT_SCHEMA = "features array<float>, error string"

#: Predictors a worker keeps at once: pyspark's ``predict_batch_udf`` keeps 3 too. A long-lived
#: worker (a Livy session lives for hours) that serves runs with other weights or engines
#: holds the three it used last, never an ever-growing set of models.
PREDICTOR_CACHE_SIZE = 3

_PREDICTORS: OrderedDict[str, Predict] = OrderedDict()
_PREDICTORS_LOCK = threading.Lock()


def cached_predictor(key: str, factory: Callable[[], Predict]) -> Predict:
    """Return the predictor cached under ``key`` in this process, building it on first use.

    ``key`` identifies engine, weights and settings, so a worker that serves two runs
    with different weights never mixes them up. The cache is a least-recently-used one
    of :data:`PREDICTOR_CACHE_SIZE` entries behind a lock (as pyspark's ``ModelCache``):
    the factory runs outside the lock, so a slow build does not block other lookups.
    """
    with _PREDICTORS_LOCK:
        predictor = _PREDICTORS.get(key)
        if predictor is not None:
            _PREDICTORS.move_to_end(key)
            return predictor
    predictor = factory()
    with _PREDICTORS_LOCK:
        _PREDICTORS[key] = predictor
        _PREDICTORS.move_to_end(key)
        while len(_PREDICTORS) > PREDICTOR_CACHE_SIZE:
            _PREDICTORS.popitem(last=False)
    return predictor


def predictor_factory(engine: PreparedEngine, broadcast, *, threads: int) -> Callable[[], Predict]:
    """What a worker calls (once per cache key) to build ``engine``'s predictor from ``broadcast``.

    The engine is looked up in the registry here, on the driver, and travels with the
    factory, pickled by reference to its class: a worker imports the engine's module
    itself. An engine registered while the driver runs (in a notebook, in a test)
    therefore builds on workers too, which a name looked up again in the worker's
    own registry would not find.

    Parameters
    ----------
    engine : PreparedEngine
        Its name selects the engine; its input size goes to the build.
    broadcast : pyspark.Broadcast
        Holds ``engine.payload``; read in the worker only.
    threads : int
        Intra-op threads of the predictor (one per Spark task slot).
    """
    return functools.partial(_build_predictor, engines.get(engine.name), broadcast, threads, engine.input_size)


def _build_predictor(engine: Engine, broadcast, threads: int, input_size: int) -> Predict:
    """Runs in a worker: read the broadcast payload and build the engine's predictor."""
    return engine.build(broadcast.value, threads=threads, input_size=input_size)


def featurize_contents(
    contents: pd.Series, predict: Predict, *, batch_size: int, input_size: int = INPUT_SIZE
) -> pd.DataFrame:
    """Featurize one Arrow batch of image bytes, ``batch_size`` images at a time.

    Parameters
    ----------
    contents : pandas.Series
        Raw file contents (``bytes``), one per row.
    predict : callable
        ``uint8 (n, size, size, 3) -> float32 (n, d)``.
    batch_size : int
        Images given to ``predict`` at once: bounds memory whatever the Arrow batch is.

    Returns
    -------
    pandas.DataFrame
        Columns ``features`` (``float32`` array or ``None``) and ``error`` (``None``
        or the reason the image was rejected), aligned with ``contents``.
    """
    count = len(contents)
    features: list[np.ndarray | None] = [None] * count
    errors: list[str | None] = [None] * count
    pending_rows: list[int] = []
    pending_pixels: list[np.ndarray] = []

    def flush() -> None:
        if not pending_rows:
            return
        output = predict(np.stack(pending_pixels))
        for row, vector in zip(pending_rows, output):
            features[row] = np.ascontiguousarray(vector, dtype=np.float32)
        pending_rows.clear()
        pending_pixels.clear()

    for row, data in enumerate(contents):
        try:
            pixels = decode_and_resize(data, input_size)
        except ImageDecodeError as exc:
            errors[row] = str(exc)
            continue
        pending_rows.append(row)
        pending_pixels.append(pixels)
        if len(pending_rows) >= batch_size:
            flush()
    flush()
    return pd.DataFrame({"features": features, "error": errors})


def make_feature_udf(
    factory: Callable[[], Predict], *, cache_key: str, batch_size: int, input_size: int = INPUT_SIZE
):
    """Wrap a predictor factory into a scalar-iterator pandas UDF returning :data:`RESULT_SCHEMA`.

    Parameters
    ----------
    factory : callable
        Picklable, called at most once per Python worker and ``cache_key``; it may read
        broadcast variables.
    cache_key : str
        Identity of the predictor (engine, weights fingerprint, settings).
    batch_size : int
        Images per call of the predictor.

    Examples
    --------
    Building the UDF needs an active SparkSession (skipped where doctests run without one):

    >>> from fruits.engines.stand_in import random_projection_predictor
    >>> udf = make_feature_udf(random_projection_predictor, cache_key="demo", batch_size=8)  # doctest: +SKIP
    >>> df.select(udf("content").alias("result"))  # doctest: +SKIP
    """
    from pyspark.sql.functions import pandas_udf

    @pandas_udf(RESULT_SCHEMA)
    def featurize(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        predict = cached_predictor(cache_key, factory)
        for contents in batches:
            yield featurize_contents(contents, predict, batch_size=batch_size, input_size=input_size)

    return featurize
