"""Featurization engines: what the driver prepares and ships, what a worker builds from it.

=============  ==============================================  =====================================
engine         shipped to workers                              features
=============  ==============================================  =====================================
``onnx``       ONNX graph converted from the Keras model       equal to Keras (relative diff < 1e-4)
               (default: fastest exact engine)
``keras``      the Keras weights arrays                        the reference
``tflite``     the int8 ``.tflite`` file a phone app ships     close to, not equal to, Keras
``onnx-int8``  that ONNX graph quantized to int8, calibrated   close to ``onnx`` (cosine about 0.998)
               on the run's own images (:mod:`fruits.onnx_int8`)
=============  ==============================================  =====================================

The driver does the heavy, one-off work (loading weights, converting to ONNX,
quantizing, cached on disk by fingerprint); workers receive bytes or arrays through a
broadcast and build a predictor once per Python worker.
"""

from __future__ import annotations

import dataclasses
import hashlib

from fruits import config, onnx_int8
from fruits.models import (
    Predict, keras_predictor, keras_to_onnx, onnx_predictor, tflite_feature_model, tflite_predictor,
)
from fruits.params import ENGINES
from fruits.weights import ResolvedWeights

ONNX_CACHE_VERSION = "opset17-uint8-v1"


@dataclasses.dataclass(frozen=True)
class PreparedEngine:
    """An engine ready to broadcast: its name, input size, payload and identity.

    ``details`` holds what the manifest must record beyond the name and fingerprint
    (``onnx-int8``: its calibration images).
    """

    name: str
    input_size: int
    sha256: str
    payload: object = dataclasses.field(repr=False, compare=False)
    details: dict = dataclasses.field(default_factory=dict, compare=False)

    def cache_key(self, threads: int) -> str:
        """Identity of the predictor a worker builds (see :func:`fruits.udf.cached_predictor`)."""
        return f"{self.name}:{self.sha256}:{self.input_size}:{threads}"


def prepare_engine(name: str, weights: ResolvedWeights, *, input_size: int,
                   calibration=None) -> PreparedEngine:
    """Turn resolved weights into what workers need for ``name``.

    Parameters
    ----------
    name : str
        One of :data:`fruits.params.ENGINES`.
    weights : ResolvedWeights
        Keras arrays for ``onnx``/``keras``/``onnx-int8``; the ``.tflite`` bytes for ``tflite``.
    input_size : int
        Side of the square network input.
    calibration : iterable of str, or mapping, optional
        ``onnx-int8`` only, and required there: the run's image paths (the engine
        picks its calibration images among them), or the ``calibration`` record of a
        previous run's manifest (the same images, checked by content), so that an
        incremental run or a projection rebuilds the same int8 graph.
    """
    if calibration is not None and name != "onnx-int8":
        raise ValueError(f"calibration applies to engine 'onnx-int8' only, got engine {name!r}")
    if name == "keras":
        return PreparedEngine(name, input_size, weights.sha256, tuple(weights.arrays))
    if name == "onnx":
        graph = cached_onnx(weights, input_size=input_size)
        return PreparedEngine(name, input_size, hashlib.sha256(graph).hexdigest(), graph)
    if name == "tflite":
        graph = tflite_feature_model(weights.model_bytes)
        return PreparedEngine(name, input_size, hashlib.sha256(graph).hexdigest(), graph)
    if name == "onnx-int8":
        if calibration is None:
            raise ValueError("engine 'onnx-int8' needs calibration images (the run's image paths), got None")
        graph, used = onnx_int8.cached_int8(
            weights.sha256, lambda: cached_onnx(weights, input_size=input_size), calibration,
            input_size=input_size)
        return PreparedEngine(name, input_size, hashlib.sha256(graph).hexdigest(), graph,
                              details={"calibration": used.to_manifest()})
    raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {name!r}")


def cached_onnx(weights: ResolvedWeights, *, input_size: int) -> bytes:
    """The ONNX graph for these weights, converted once and kept in the cache folder."""
    folder = config.cache_dir() / "onnx"
    path = folder / f"mobilenet_v2-{weights.sha256[:24]}-{input_size}-{ONNX_CACHE_VERSION}.onnx"
    if path.is_file():
        return path.read_bytes()
    graph = keras_to_onnx(weights.arrays, input_size=input_size)
    config.write_cache_file(path, graph)  # a read-only home only costs a conversion next time
    return graph


def build_predictor(name: str, payload, *, threads: int, input_size: int) -> Predict:
    """Worker side: build the predictor for ``name`` from the broadcast payload."""
    if name == "keras":
        return keras_predictor(payload, threads=threads, input_size=input_size)
    if name in ("onnx", "onnx-int8"):
        return onnx_predictor(payload, threads=threads)
    if name == "tflite":
        return tflite_predictor(payload, threads=threads)
    raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {name!r}")
