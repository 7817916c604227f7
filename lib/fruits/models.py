"""Model factories: each returns ``predict(pixels) -> features`` and imports its framework lazily.

A predictor takes a ``uint8`` batch ``(n, size, size, 3)`` of RGB pixels and returns
``float32`` features ``(n, 1280)``; each engine scales pixels its own way (Keras and
ONNX to ``[-1, 1]``, the int8 TFLite model takes raw pixels).

Factories run inside Spark Python workers, once per worker (see :mod:`fruits.udf`).
Weights always come from the driver: a network built with ``weights=None`` in each
worker would draw different random weights everywhere. The ONNX and TFLite
predictors import neither TensorFlow nor Keras: TensorFlow loaded in a worker slows
ONNX Runtime there by a third and costs seconds of start-up.
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

import numpy as np

from fruits.params import FEATURE_DIM
from fruits.preprocess import INPUT_SIZE, scale_for_mobilenet

#: ``predict(pixels)``: ``uint8`` array ``(n, size, size, 3)`` -> ``float32`` ``(n, 1280)``.
Predict = Callable[[np.ndarray], np.ndarray]

#: Name of the ONNX graph's input (uint8 pixels) and output (1280 features).
ONNX_INPUT, ONNX_OUTPUT = "pixels", "features"


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


def _keras_with_weights(arrays: Sequence[np.ndarray], input_size: int):
    model = build_keras_backbone(None, input_size=input_size)
    model.set_weights(list(arrays))
    return model


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
    model = _keras_with_weights(arrays, input_size)

    def predict(pixels: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict_on_batch(scale_for_mobilenet(pixels)), dtype=np.float32)

    return predict


def keras_to_onnx(arrays: Sequence[np.ndarray], *, input_size: int = INPUT_SIZE) -> bytes:
    """Convert the backbone with these weights to an ONNX graph (on the driver, with tf2onnx).

    The graph takes ``uint8`` pixels named :data:`ONNX_INPUT` and scales them itself
    (``x / 127.5 - 1``, as Keras' ``preprocess_input``), so workers only decode.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import tf2onnx

    model = _keras_with_weights(arrays, input_size)
    signature = (tf.TensorSpec((None, input_size, input_size, 3), tf.uint8, name=ONNX_INPUT),)

    @tf.function(input_signature=signature)
    def features(pixels):
        scaled = tf.cast(pixels, tf.float32) / 127.5 - 1.0
        return {ONNX_OUTPUT: model(scaled, training=False)}

    proto, _ = tf2onnx.convert.from_function(features, input_signature=signature, opset=17)
    return proto.SerializeToString()


def onnx_predictor(model_bytes: bytes, *, threads: int = 1) -> Predict:
    """ONNX Runtime session on the CPU with ``threads`` intra-op threads; no TensorFlow."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])

    def predict(pixels: np.ndarray) -> np.ndarray:
        return session.run([ONNX_OUTPUT], {ONNX_INPUT: np.ascontiguousarray(pixels)})[0]

    return predict


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


def random_projection_predictor(seed: int = 0, *, input_size: int = INPUT_SIZE) -> Predict:
    """A tiny NumPy stand-in for the network, for plumbing tests only.

    Pools the image to 8x8x3 and projects it to 1280 values with a fixed random
    matrix followed by a ReLU: cheap, deterministic, and sensitive to the pixels, so
    tests of the UDF, the writers and the PCA need no deep-learning framework. Its
    features mean nothing.
    """
    rng = np.random.default_rng(seed)
    projection = rng.standard_normal((8 * 8 * 3, FEATURE_DIM)).astype(np.float32)

    def predict(pixels: np.ndarray) -> np.ndarray:
        cell = pixels.shape[1] // 8
        trimmed = scale_for_mobilenet(pixels[:, : cell * 8, : cell * 8, :])
        pooled = trimmed.reshape(len(pixels), 8, cell, 8, cell, 3).mean(axis=(2, 4))
        return np.maximum(pooled.reshape(len(pixels), -1) @ projection, 0).astype(np.float32)

    return predict
