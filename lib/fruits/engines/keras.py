"""Engine ``keras``: the reference, MobileNetV2 run by Keras itself in every worker.

Workers receive the Keras weights arrays and rebuild the network with them; the
other engines are measured against its features. It is the slowest engine and the
only one that loads TensorFlow in workers.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np

from fruits.engines.base import Engine, Predict, PreparedEngine
from fruits.engines.mobilenet import keras_with_weights
from fruits.engines.weights import ResolvedWeights, resolve_weights
from fruits.featurize.preprocess import scale_for_mobilenet
from fruits.featurize.shapes import INPUT_SIZE


class KerasEngine(Engine):
    """Keras weights in, the Keras model in each worker."""

    summary = "the reference"

    def resolve(self, requested: str | None, *, allow_random: bool, seed: int = 0) -> ResolvedWeights:
        """The Keras weights (:func:`fruits.engines.weights.resolve_weights`)."""
        return resolve_weights(requested, allow_random=allow_random, seed=seed)

    def prepare(self, weights: ResolvedWeights, *, input_size: int, inputs: Sequence[str] = (),
                recorded: Mapping | None = None) -> PreparedEngine:
        """The weights arrays themselves, identified by their fingerprint."""
        return PreparedEngine(self.name, input_size, weights.sha256, tuple(weights.arrays))

    def build(self, payload, *, threads: int, input_size: int) -> Predict:
        return keras_predictor(payload, threads=threads, input_size=input_size)


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
    model = keras_with_weights(arrays, input_size=input_size)

    def predict(pixels: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict_on_batch(scale_for_mobilenet(pixels)), dtype=np.float32)

    return predict
