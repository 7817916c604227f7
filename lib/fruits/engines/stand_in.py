"""A plumbing-test model: a tiny NumPy stand-in for MobileNetV2, never a featurization engine.

It is not registered: no run can choose it. Tests of the UDF, the writers, the PCA
and the engine registry use it so they need no deep-learning framework; its
features mean nothing.
"""

from __future__ import annotations

import numpy as np

from fruits.engines.base import Predict
from fruits.featurize.preprocess import scale_for_mobilenet
from fruits.featurize.shapes import FEATURE_DIM, INPUT_SIZE


def random_projection_predictor(seed: int = 0, *, input_size: int = INPUT_SIZE) -> Predict:
    """A predictor with MobileNetV2's contract (``uint8 (n, s, s, 3) -> float32 (n, 1280)``), in NumPy.

    Pools the image to 8x8x3 and projects it to 1280 values with a fixed random
    matrix followed by a ReLU: cheap, deterministic, and sensitive to the pixels.

    Examples
    --------
    >>> predict = random_projection_predictor(0)
    >>> predict(np.zeros((2, 32, 32, 3), dtype=np.uint8)).shape
    (2, 1280)
    """
    rng = np.random.default_rng(seed)
    projection = rng.standard_normal((8 * 8 * 3, FEATURE_DIM)).astype(np.float32)

    def predict(pixels: np.ndarray) -> np.ndarray:
        cell = pixels.shape[1] // 8
        trimmed = scale_for_mobilenet(pixels[:, : cell * 8, : cell * 8, :])
        pooled = trimmed.reshape(len(pixels), 8, cell, 8, cell, 3).mean(axis=(2, 4))
        return np.maximum(pooled.reshape(len(pixels), -1) @ projection, 0).astype(np.float32)

    return predict
