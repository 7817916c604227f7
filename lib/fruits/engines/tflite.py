"""Engine ``tflite``: the int8 MobileNetV2 ``.tflite`` file a phone app ships, run by LiteRT.

Its weights are that file, not the Keras weights: the ``weights`` parameter, else
``FRUITS_TFLITE_MODEL``, with no random fallback (a quantized model cannot be made
up). Its input is fixed at 224x224. Features are close to, not equal to, Keras'.
Workers import LiteRT, not TensorFlow.
"""

from __future__ import annotations

import hashlib
import os
from typing import Mapping, Sequence

import numpy as np

from fruits import config
from fruits.engines.base import Engine, Predict, PreparedEngine
from fruits.engines.weights import MissingWeightsError, ResolvedWeights, local_copy
from fruits.featurize.shapes import FEATURE_DIM, INPUT_SIZE


class TfliteEngine(Engine):
    """A ``.tflite`` file in, its graph (rewritten to output the pooled features) to the workers."""

    summary = "int8 phone model"

    fixed_input_size = INPUT_SIZE

    #: The interpreter takes one image at a time: larger batches would only be stacked and split.
    batch_size = 1

    def resolve(self, requested: str | None, *, allow_random: bool, seed: int = 0) -> ResolvedWeights:
        """The ``.tflite`` file (:func:`resolve_tflite`); ``allow_random`` and ``seed`` do not apply."""
        return resolve_tflite(requested)

    def prepare(self, weights: ResolvedWeights, *, input_size: int, inputs: Sequence[str] = (),
                recorded: Mapping | None = None) -> PreparedEngine:
        """The graph with its pooled tensor declared the output (:func:`tflite_feature_model`)."""
        return self.prepared(tflite_feature_model(weights.model_bytes), input_size=input_size)

    def build(self, payload, *, threads: int, input_size: int) -> Predict:
        return tflite_predictor(payload, threads=threads)


def resolve_tflite(requested: str | None) -> ResolvedWeights:
    """Find the int8 MobileNetV2 ``.tflite`` model: the ``weights`` parameter, then ``FRUITS_TFLITE_MODEL``.

    There is no random fallback: a quantized model cannot be made up.

    Raises
    ------
    MissingWeightsError
        Neither is set, the file is missing, or it is not a ``.tflite`` file.
    """
    path = requested or config.weights_from_env(config.TFLITE_ENV)
    origin = "the 'weights' parameter" if requested else config.TFLITE_ENV
    if path is None:
        raise MissingWeightsError(
            f"engine 'tflite' needs an int8 MobileNetV2 .tflite file: set {config.TFLITE_ENV} "
            "or pass the 'weights' parameter (-p weights PATH.tflite)."
        )
    if not path.endswith(".tflite"):
        raise MissingWeightsError(
            f"engine 'tflite' needs a .tflite file, but {origin} is {path!r}; set "
            f"{config.TFLITE_ENV} or pass -p weights PATH.tflite."
        )
    local_path, cleanup = local_copy(path, origin, env=config.TFLITE_ENV)
    try:
        with open(local_path, "rb") as handle:
            blob = handle.read()
    finally:
        if cleanup:
            os.unlink(local_path)
    digest = hashlib.sha256(blob).hexdigest()
    return ResolvedWeights(source=path, is_random=False, sha256=digest, model_bytes=blob)


def is_feature_tensor(name: str, shape: Sequence[int]) -> bool:
    """True for MobileNetV2's pooled 1280-wide tensor (``.../AvgPool`` or ``.../GlobalPool/...``)."""
    shape = [int(v) for v in shape]
    return bool(shape) and shape[-1] == FEATURE_DIM and int(np.prod(shape)) == FEATURE_DIM \
        and "pool" in name.lower()


def tflite_feature_model(model_bytes: bytes) -> bytes:
    """Rewrite a MobileNetV2 ``.tflite`` graph so its output is the pooled features (driver side).

    The pooled tensor is an intermediate one; reading it from the original graph
    needs ``experimental_preserve_all_tensors``, which keeps XNNPACK from fusing and
    halves the speed. Declaring it the graph's output gives the same values at full
    speed (measured: identical bytes, 113 instead of about 65 images/s per thread).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
    graph = model.subgraphs[0]
    for index, tensor in enumerate(graph.tensors):
        name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)
        if is_feature_tensor(name, tensor.shape):
            graph.outputs = np.array([index], dtype=np.int32)
            return bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    raise ValueError("no pooled 1280-wide tensor (AvgPool/GlobalPool) in this TFLite model")


def tflite_predictor(model_bytes: bytes, *, threads: int = 1) -> Predict:
    """The int8 TFLite MobileNetV2 (what a phone app runs), with LiteRT rather than TensorFlow.

    ``model_bytes`` come from :func:`tflite_feature_model`: the graph's output is the
    pooled tensor, dequantized here to float32. The graph takes one uint8 image at a time.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model_bytes, num_threads=threads)
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]["index"]
    target = interpreter.get_output_details()[0]
    scale, zero_point = target["quantization"]

    def predict(pixels: np.ndarray) -> np.ndarray:
        output = np.empty((len(pixels), FEATURE_DIM), dtype=np.float32)
        for row, image in enumerate(pixels):
            interpreter.set_tensor(source, image[None])
            interpreter.invoke()
            raw = interpreter.get_tensor(target["index"]).reshape(FEATURE_DIM)
            output[row] = (raw.astype(np.float32) - zero_point) * scale if scale else raw
        return output

    return predict
