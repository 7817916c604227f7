"""Model factories: each returns ``predict(batch) -> features`` and imports its framework lazily.

A factory runs inside a Spark Python worker, once per worker (see :mod:`fruits.udf`),
so importing TensorFlow and building the graph is paid once, not once per task as in
the study. Weights always arrive as arrays from the driver: a network built with
``weights=None`` in each worker would draw different random weights everywhere.
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

import numpy as np

from fruits.params import FEATURE_DIM
from fruits.preprocess import INPUT_SIZE

#: ``predict(batch)``: ``float32`` array ``(n, size, size, 3)`` in ``[-1, 1]`` -> ``(n, 1280)``.
Predict = Callable[[np.ndarray], np.ndarray]


def build_keras_backbone(weights: str | None = None, *, input_size: int = INPUT_SIZE):
    """MobileNetV2 without its classifier, average-pooled: the study's ``layers[-2]`` output.

    Parameters
    ----------
    weights : str or None
        ``"imagenet"``, a path to a Keras ``.h5`` weights file, or ``None`` (random).
    input_size : int
        Side of the square input.

    Returns
    -------
    keras.Model
        Outputs ``(n, 1280)`` float32 features.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    return keras.applications.MobileNetV2(
        weights=weights,
        include_top=False,
        pooling="avg",
        input_shape=(input_size, input_size, 3),
    )


def seed_keras(seed: int) -> None:
    """Seed Keras' weight initialisers (random weights are then reproducible)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    keras.utils.set_random_seed(seed)


def keras_predictor(
    arrays: Sequence[np.ndarray], *, threads: int = 1, input_size: int = INPUT_SIZE
) -> Predict:
    """Build the Keras backbone, load the driver's weights, return its ``predict``.

    Parameters
    ----------
    arrays : sequence of numpy.ndarray
        ``model.get_weights()`` from the driver.
    threads : int
        TensorFlow intra-op threads: one per Spark task slot keeps concurrent tasks
        from fighting over the same cores.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # TensorFlow was already initialised in this process; keep its settings.
    model = build_keras_backbone(None, input_size=input_size)
    model.set_weights(list(arrays))

    def predict(batch: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict_on_batch(batch), dtype=np.float32)

    return predict


def random_projection_predictor(seed: int = 0, *, input_size: int = INPUT_SIZE) -> Predict:
    """A tiny NumPy stand-in for the network, for plumbing tests only.

    Pools the image to 8x8x3 and projects it to 1280 values with a fixed random
    matrix followed by a ReLU: cheap, deterministic, and sensitive to the pixels, so
    tests of the UDF, the writers and the PCA need no deep-learning framework. Its
    features mean nothing.
    """
    rng = np.random.default_rng(seed)
    projection = rng.standard_normal((8 * 8 * 3, FEATURE_DIM)).astype(np.float32)
    cell = input_size // 8

    def predict(batch: np.ndarray) -> np.ndarray:
        trimmed = batch[:, : cell * 8, : cell * 8, :]
        pooled = trimmed.reshape(len(batch), 8, cell, 8, cell, 3).mean(axis=(2, 4))
        return np.maximum(pooled.reshape(len(batch), -1) @ projection, 0).astype(np.float32)

    return predict
