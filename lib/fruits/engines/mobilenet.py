"""The Keras MobileNetV2 backbone: the study's network, which the Keras weights fit.

Built on the driver to load and fingerprint weights (:mod:`fruits.engines.weights`)
and to convert them (:mod:`fruits.engines.onnx`), and in workers by the ``keras``
engine only. Keras is imported inside each function: importing this module costs
nothing.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from fruits.featurize.shapes import INPUT_SIZE


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


def keras_with_weights(arrays: Sequence[np.ndarray], *, input_size: int = INPUT_SIZE):
    """The backbone at ``input_size`` holding ``arrays`` (``model.get_weights()`` from the driver).

    The weights do not depend on the input size, so arrays loaded at 224 serve any size.
    """
    model = build_keras_backbone(None, input_size=input_size)
    model.set_weights(list(arrays))
    return model
