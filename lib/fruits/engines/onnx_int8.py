"""Engine ``onnx-int8``: the project's own ONNX graph, quantized to int8 on the driver.

The fp32 graph of the ``onnx`` engine is quantized statically with ONNX Runtime
(QDQ format: int8 weights per output channel, uint8 activations, ranges from the
minimum and maximum seen on calibration images). Workers run it with the same
predictor as the fp32 graph; ONNX Runtime fuses the QDQ pairs into int8 kernels.

Plain quantization of every layer of MobileNetV2 doubles the speed but moves the
features a long way (cosine similarity to the fp32 features 0.96 median, 0.88
minimum, on 400 Fruits-360 Test images): the stem and the first depthwise layer
have channels with gains of about 50, which amplify rounding. Two measured
remedies are applied, in this order of effect:

* the stem and the first two inverted-residual blocks (the first
  :data:`FLOAT_CONVS` convolutions, about a sixth of the multiply-adds) stay in
  float;
* *bias correction*: rounding the weights shifts each output channel's mean by
  ``(W_int8 - W) @ E[x]``; each bias is corrected by that amount, ``E[x]`` being
  the mean input of the layer over the calibration images.

Weights use 7 of their 8 bits (``reduce_range``). ONNX Runtime's uint8 x int8 kernel on x86
CPUs without VNNI (AVX2 only) adds pairs of products in saturating 16-bit sums, which
full-range weights overflow: on such a CPU (an AMD EPYC, 40 Test images of 40 classes) the
full-range graph gave cosine 0.9879 median, 0.9797 minimum; with 7-bit weights 0.9962 and
0.9930; unsigned weights (no saturating path) 0.9943 and 0.9903. With VNNI the full-range
graph measured 0.9978 / 0.9947 on 400 images (below): the features would depend on the CPU
that runs them, so the graph is built for every CPU.

Measured on the same 400 images: cosine 0.9978 median, 0.9947 minimum; the network
alone runs 1.5 to 1.9x as many images/s as the fp32 graph (one image per call: 1.5-1.6x),
and with JPEG decoding and resizing included 1.3 to 1.44x in Spark
(``bench/results/int8/``, ``bench/results/engines-bs1/``). ONNX Runtime's profile puts
1.9 of the graph's 4.8 ms per image in the float part (stem and first two blocks).

Calibration must be deterministic and must not need data the product does not
have, so it uses the run's own input: :data:`CALIBRATION_IMAGES` images evenly
spaced through the sorted list of paths (all images when there are fewer). The
quantized graph is cached by the weights' fingerprint, the calibration images'
content fingerprint, the input size, the ONNX Runtime version and :data:`CACHE_VERSION`;
the calibration set (paths, count, fingerprint) goes into the run's manifest, so
an incremental run or a projection can rebuild exactly the same graph.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from fruits import config
from fruits.engines.base import PreparedEngine
from fruits.engines.onnx import OnnxEngine, cached_onnx
from fruits.engines.weights import ResolvedWeights
from fruits.featurize.preprocess import ImageDecodeError, decode_and_resize
from fruits.storage import location

#: Images the graph is calibrated on (fewer when the input holds fewer).
CALIBRATION_IMAGES = 100

#: Leading convolutions kept in float: MobileNetV2's stem and its first two
#: inverted-residual blocks. Ending the float part on a narrow tensor (24 channels)
#: keeps the cost of the switch small (4, ending on 96 channels at 112x112, is slower
#: than 6). Measured on 400 Test images, bias-corrected, cosine median / minimum and
#: speed of the network alone against fp32 (one thread): 6: 0.9978 / 0.9947, 1.7x;
#: 3: 0.9961 / 0.9865, 2.1x; 2: 0.9960 / 0.9860, 2.1x; none: 0.9905 / 0.935, 2.2x.
FLOAT_CONVS = 6

#: Changes whenever the recipe changes, so cached graphs of an older recipe are not reused.
CACHE_VERSION = "qdq-s7pc-u8-minmax-biascorr-f6-v2"

#: How the calibration images are chosen, as recorded in the manifest.
CALIBRATION_RULE = f"up to {CALIBRATION_IMAGES} images evenly spaced through the run's input, sorted by path"

#: Images per calibration batch: bounds the driver's memory (every layer's input is kept).
_BATCH = 8


class OnnxInt8Engine(OnnxEngine):
    """The ``onnx`` engine's weights and worker runtime, with its graph quantized on the driver."""

    summary = "faster, close to onnx"

    calibration_images = CALIBRATION_IMAGES

    def needs_inputs(self, recorded: Mapping | None = None) -> bool:
        """True unless ``recorded`` holds the calibration of the run being continued or projected."""
        return not (recorded or {}).get("calibration")

    def prepare(self, weights: ResolvedWeights, *, input_size: int, inputs: Sequence[str] = (),
                recorded: Mapping | None = None) -> PreparedEngine:
        """The int8 graph, calibrated on the images ``recorded`` names, else chosen among ``inputs``.

        A continued run or a projection passes the record of the run it builds on, so
        the graph is quantized on the very images that run recorded (checked by
        content) and comes out byte for byte the same; a new run offers its own images.

        Raises
        ------
        ValueError
            No calibration image (neither a record nor inputs), none decodes, or the
            recorded images changed since.
        """
        calibration = (recorded or {}).get("calibration") or list(inputs)
        if not calibration:
            raise ValueError(f"engine {self.name!r} needs calibration images (the run's image paths), got none")
        graph, used = cached_int8(weights.sha256, lambda: cached_onnx(weights, input_size=input_size), calibration,
                                  input_size=input_size)
        return self.prepared(graph, input_size=input_size, details={"calibration": used.to_manifest()})


@dataclasses.dataclass(frozen=True)
class Calibration:
    """The images a graph was calibrated on, in order, and the fingerprint of their contents."""

    paths: tuple[str, ...]
    sha256: str

    def to_manifest(self) -> dict:
        """What the manifest records: enough to check and to rebuild the same graph."""
        return {"rule": CALIBRATION_RULE, "images": len(self.paths), "sha256": self.sha256,
                "paths": list(self.paths)}


def choose_calibration(paths: Iterable[str], *, count: int = CALIBRATION_IMAGES) -> tuple[str, ...]:
    """``count`` paths evenly spaced through the sorted ``paths`` (all of them if fewer).

    Spacing them through the sorted list spreads them over every class folder; the
    first ``count`` would all come from the first class or two.

    Examples
    --------
    >>> choose_calibration(["d", "a", "c", "b"], count=2)
    ('a', 'c')
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive integer, got {count!r}")
    ordered = sorted(set(paths))
    if not ordered:
        raise ValueError("engine 'onnx-int8' needs at least one image to calibrate on, got none")
    chosen = min(count, len(ordered))
    return tuple(ordered[index * len(ordered) // chosen] for index in range(chosen))


def calibration_paths(spec) -> tuple[tuple[str, ...], str | None]:
    """Paths and expected fingerprint from ``spec``: a manifest's record, or candidate paths.

    A mapping is a previous run's record (:meth:`Calibration.to_manifest`): its paths
    are used as they are and their content must still match its fingerprint. Any
    other iterable holds candidate paths (a run's input), from which
    :func:`choose_calibration` picks.
    """
    if isinstance(spec, Mapping):
        if not spec.get("paths") or not spec.get("sha256"):
            raise ValueError(f"a recorded calibration needs 'paths' and 'sha256', got keys {sorted(spec)}")
        return tuple(spec["paths"]), str(spec["sha256"])
    if spec is None or isinstance(spec, (str, bytes)):
        raise ValueError(f"calibration must be image paths or a recorded calibration, got {spec!r}")
    return choose_calibration(spec), None


def read_calibration(paths: Sequence[str], *, input_size: int,
                     expected_sha256: str | None = None) -> tuple[Calibration, np.ndarray]:
    """Read and decode the calibration images on the driver, exactly as workers decode.

    Files that do not decode are left out (a corrupt file in the input must not stop
    the run; it is rejected later like any other). The fingerprint covers the bytes
    of the images kept, in order.

    Raises
    ------
    ValueError
        No image decodes, or the content no longer matches ``expected_sha256``.
    """

    digest, kept, pixels = hashlib.sha256(), [], []
    for path in paths:
        data = location.read_bytes(path)
        try:
            image = decode_and_resize(data, input_size)
        except ImageDecodeError:
            continue
        digest.update(hashlib.sha256(data).digest())
        kept.append(path)
        pixels.append(image)
    if not kept:
        raise ValueError(f"engine 'onnx-int8': none of the {len(paths)} calibration images could be decoded")
    calibration = Calibration(paths=tuple(kept), sha256=digest.hexdigest())
    if expected_sha256 is not None and calibration.sha256 != expected_sha256:
        raise ValueError(
            f"engine 'onnx-int8': the calibration images recorded by the previous run changed "
            f"(fingerprint {calibration.sha256[:12]}..., recorded {expected_sha256[:12]}...); "
            "the same int8 graph cannot be rebuilt. Use mode='overwrite' to recompute everything."
        )
    return calibration, np.stack(pixels)


def cached_int8(weights_sha256: str, fp32_graph: Callable[[], bytes], calibration_spec, *,
                input_size: int) -> tuple[bytes, Calibration]:
    """The int8 graph for these weights and calibration images, quantized once and kept in the cache folder.

    Parameters
    ----------
    weights_sha256 : str
        Fingerprint of the Keras weights the fp32 graph was converted from.
    fp32_graph : callable
        Returns the ``onnx`` engine's graph (uint8 pixels in, 1280 features out);
        called only when the int8 graph is not cached.
    calibration_spec : iterable of str or mapping
        Candidate image paths (a run's input) or a recorded calibration (see
        :func:`calibration_paths`).
    input_size : int
        Side the calibration images are resized to; the graph's input size.

    Returns
    -------
    bytes, Calibration
        The serialized int8 graph and the calibration it was built from.
    """
    import onnxruntime

    paths, expected = calibration_paths(calibration_spec)
    calibration, pixels = read_calibration(paths, input_size=input_size, expected_sha256=expected)
    identity = hashlib.sha256(
        f"{weights_sha256}:{calibration.sha256}:{input_size}:{onnxruntime.__version__}:{CACHE_VERSION}".encode()
    ).hexdigest()
    folder = config.cache_dir() / "onnx"
    path = folder / f"mobilenet_v2-int8-{identity[:32]}.onnx"
    if path.is_file():
        return path.read_bytes(), calibration
    graph = quantize(fp32_graph(), pixels)
    config.write_cache_file(path, graph)  # a read-only home only costs a quantization next time
    return graph, calibration


def quantize(fp32_graph: bytes, pixels: np.ndarray, *, float_convs: int = FLOAT_CONVS,
             reduce_range: bool = True) -> bytes:
    """Quantize ``fp32_graph`` statically on ``pixels`` (uint8, ``(n, size, size, 3)``).

    Deterministic: the same graph and pixels in the same order give the same bytes.
    ``reduce_range=False`` (full 8-bit weights) is for comparing the two
    (``bench/int8_bits.py``); the engine always uses 7-bit weights (see the module).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if isinstance(float_convs, bool) or not isinstance(float_convs, int) or float_convs < 0:
        raise ValueError(f"float_convs must be a non-negative integer, got {float_convs!r}")
    with tempfile.TemporaryDirectory(prefix="fruits-int8-") as scratch:
        source, prepared, target = (os.path.join(scratch, name) for name in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        with open(source, "wb") as handle:
            handle.write(fp32_graph)
        quant_pre_process(source, prepared, skip_symbolic_shape=True)
        model = onnx.load(prepared)
        quantize_static(
            prepared, target, _Batches(pixels, input_name=model.graph.input[0].name),
            quant_format=QuantFormat.QDQ, per_channel=True, weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8, calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=_float_nodes(model, float_convs),
            # 7-bit weights: x86 CPUs without VNNI (AVX2 only: AMD EPYC here, Skylake m5 nodes)
            # multiply uint8 x int8 pairs into saturating int16 sums, which full-range weights overflow.
            reduce_range=reduce_range,
        )
        quantized = onnx.load(target)
    _correct_biases(model, quantized, pixels)
    return quantized.SerializeToString()


class _Batches:
    """ONNX Runtime's calibration reader: the pixels in fixed batches, in order."""

    def __init__(self, pixels: np.ndarray, *, input_name: str) -> None:
        self._batches = iter([pixels[i:i + _BATCH] for i in range(0, len(pixels), _BATCH)])
        self._input_name = input_name

    def get_next(self):
        batch = next(self._batches, None)
        return None if batch is None else {self._input_name: batch}


def _float_nodes(model, float_convs: int) -> list[str]:
    """Nodes left in float: the first ``float_convs`` convolutions with the ReLU6 after each,
    and the pooling at the end, so the features come out of a float average."""
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    keep = []
    for node in [n for n in model.graph.node if n.op_type == "Conv"][:float_convs]:
        keep.append(node.name)
        keep += [c.name for c in consumers.get(node.output[0], []) if c.op_type == "Clip"]
    keep += [n.name for n in model.graph.node if n.op_type in ("GlobalAveragePool", "Squeeze")]
    return keep


def _correct_biases(fp32_model, quantized, pixels: np.ndarray) -> None:
    """Subtract from each quantized convolution's bias the mean shift its rounded weights cause.

    For output channel ``o`` the shift is ``sum((W_q - W)[o, i, :, :]) * E[x_i]`` (for a
    depthwise convolution ``i = o``), where ``E[x_i]`` is the mean of input channel ``i``
    over the calibration images in the fp32 graph. Borders (padding) are ignored: a
    first-order correction. Edits ``quantized`` in place.
    """
    from onnx import numpy_helper

    float_init = {i.name: i for i in fp32_model.graph.initializer}
    quant_init = {i.name: i for i in quantized.graph.initializer}
    producer = {out: node for node in quantized.graph.node for out in node.output}
    by_name = {node.name: node for node in quantized.graph.node}
    targets = []
    for conv in (n for n in fp32_model.graph.node if n.op_type == "Conv" and len(n.input) > 2):
        node = by_name.get(conv.name)
        weight_dq = producer.get(node.input[1]) if node is not None else None
        if weight_dq is None or weight_dq.op_type != "DequantizeLinear":
            continue  # left in float: nothing was rounded
        targets.append((conv, node, weight_dq))
    if not targets:
        return
    means = _input_means(fp32_model, [conv.input[0] for conv, _, _ in targets], pixels)
    for (conv, node, weight_dq), mean in zip(targets, means):
        weights = numpy_helper.to_array(float_init[conv.input[1]]).astype(np.float64)
        rounded = _dequantize(weight_dq, quant_init, weights.shape)
        error = (rounded - weights).sum(axis=(2, 3))  # (out, in / group)
        groups = next((a.i for a in conv.attribute if a.name == "group"), 1)
        shift = error[:, 0] * mean if groups > 1 else error @ mean  # MobileNetV2: depthwise or dense
        _shift_bias(node, producer, quant_init, shift)


def _input_means(model, names: list[str], pixels: np.ndarray) -> list[np.ndarray]:
    """Per-channel mean of each named tensor (NCHW) over ``pixels``, run in the fp32 graph."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    for name in names:
        probe.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    input_name = model.graph.input[0].name
    totals = [0.0] * len(names)
    for start in range(0, len(pixels), _BATCH):
        outputs = session.run(names, {input_name: pixels[start:start + _BATCH]})
        totals = [total + output.astype(np.float64).mean(axis=(2, 3)).sum(axis=0)
                  for total, output in zip(totals, outputs)]
    return [total / len(pixels) for total in totals]


def _dequantize(node, initializers, shape) -> np.ndarray:
    from onnx import numpy_helper

    values, scale = (numpy_helper.to_array(initializers[name]) for name in node.input[:2])
    zero = numpy_helper.to_array(initializers[node.input[2]]) if len(node.input) > 2 else 0
    broadcast = (-1,) + (1,) * (len(shape) - 1) if np.ndim(scale) == 1 else ()
    scale = np.reshape(scale, broadcast) if broadcast else scale
    zero = np.reshape(zero, broadcast) if broadcast and np.ndim(zero) == 1 else zero
    return (values.astype(np.float64) - zero) * scale


def _shift_bias(node, producer, initializers, shift: np.ndarray) -> None:
    """Subtract ``shift`` from the bias of ``node``, quantized (int32 + scale) or float."""
    from onnx import numpy_helper

    bias_dq = producer.get(node.input[2])
    if bias_dq is not None and bias_dq.op_type == "DequantizeLinear":
        stored = initializers[bias_dq.input[0]]
        scale = numpy_helper.to_array(initializers[bias_dq.input[1]]).astype(np.float64)
        values = numpy_helper.to_array(stored).astype(np.float64) - shift / scale
        values = np.clip(np.round(values), np.iinfo(np.int32).min, np.iinfo(np.int32).max).astype(np.int32)
    else:
        stored = initializers[node.input[2]]
        values = (numpy_helper.to_array(stored).astype(np.float64) - shift).astype(np.float32)
    stored.CopyFrom(numpy_helper.from_array(values, stored.name))
