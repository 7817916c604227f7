"""Engine ``onnx`` (the default): the Keras model converted to ONNX on the driver, run by ONNX Runtime.

The driver converts the backbone with tf2onnx once per weights fingerprint and input
size, and keeps the graph in the cache folder; workers receive its bytes and never
import TensorFlow (loaded in a worker, it slows ONNX Runtime there by a third and
costs seconds of start-up). Features equal Keras' (relative difference below 1e-4,
tested), about twice as fast.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np

from fruits import config
from fruits.engines.base import Engine, Predict, PreparedEngine
from fruits.engines.mobilenet import keras_with_weights
from fruits.engines.weights import ResolvedWeights, resolve_weights
from fruits.featurize.shapes import INPUT_SIZE

#: Name of the ONNX graph's input (uint8 pixels) and output (1280 features).
ONNX_INPUT, ONNX_OUTPUT = "pixels", "features"

#: Changes whenever the conversion changes, so cached graphs of an older one are not reused.
ONNX_CACHE_VERSION = "opset17-uint8-v1"


class OnnxEngine(Engine):
    """Keras weights in, an ONNX graph (bytes) to the workers, ONNX Runtime there."""

    summary = "default, equal to Keras"

    #: One image per call: MobileNetV2's activations for one 224x224 image fit in a
    #: core's L2 cache, for 32 they do not. Measured on one thread (2,000-image bench,
    #: decoding included): 6.5 ms per image at 1, 7.2 at 2, 7.7 at 4, 9.2 at 32; the
    #: int8 graph 4.3, 4.3, 4.6, 6.0.
    batch_size = 1

    def resolve(self, requested: str | None, *, allow_random: bool, seed: int = 0) -> ResolvedWeights:
        """The Keras weights the graph is converted from (:func:`fruits.engines.weights.resolve_weights`)."""
        return resolve_weights(requested, allow_random=allow_random, seed=seed)

    def prepare(self, weights: ResolvedWeights, *, input_size: int, inputs: Sequence[str] = (),
                recorded: Mapping | None = None) -> PreparedEngine:
        """The converted graph, from the cache folder when it was converted before."""
        return self.prepared(cached_onnx(weights, input_size=input_size), input_size=input_size)

    def build(self, payload, *, threads: int, input_size: int) -> Predict:
        return onnx_predictor(payload, threads=threads)


def cached_onnx(weights: ResolvedWeights, *, input_size: int) -> bytes:
    """The ONNX graph for these weights, converted once and kept in the cache folder."""
    folder = config.cache_dir() / "onnx"
    path = folder / f"mobilenet_v2-{weights.sha256[:24]}-{input_size}-{ONNX_CACHE_VERSION}.onnx"
    if path.is_file():
        return path.read_bytes()
    graph = keras_to_onnx(weights.arrays, input_size=input_size)
    config.write_cache_file(path, graph)  # a read-only home only costs a conversion next time
    return graph


def keras_to_onnx(arrays: Sequence[np.ndarray], *, input_size: int = INPUT_SIZE) -> bytes:
    """Convert the backbone with these weights to an ONNX graph (on the driver, with tf2onnx).

    The graph takes ``uint8`` pixels named :data:`ONNX_INPUT` and scales them itself
    (``x / 127.5 - 1``, as Keras' ``preprocess_input``), so workers only decode.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import tf2onnx

    model = keras_with_weights(arrays, input_size=input_size)
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
