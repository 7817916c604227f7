"""Weights on the driver: the Keras MobileNetV2 weights three engines share, and what every engine returns.

:func:`resolve_weights` is the rule of the engines that run the Keras weights
(``keras``, ``onnx``, ``onnx-int8``); the ``tflite`` engine has its own
(:func:`fruits.engines.tflite.resolve_tflite`). Both return :class:`ResolvedWeights`,
raise :class:`MissingWeightsError` and read remote files through :func:`local_copy`.

Order of :func:`resolve_weights`: the ``weights`` parameter, then ``FRUITS_WEIGHTS``,
then ``"imagenet"``: Keras' own cache file, downloaded from where Keras downloads it when
absent (without importing Keras). Only the demo may fall back to random weights, and it
says so loudly; any other run stops with a message naming both settings.

The arrays found here are what every worker receives (broadcast from the driver),
and their SHA-256 fingerprint goes into the manifest so a later projection can
check it computes the same features.

Reading a ``.h5`` file means building the Keras model, which imports TensorFlow
(about 3 s of a run's start, and TensorFlow's memory in the driver for the rest of
it). A file's arrays are therefore kept in the cache folder, keyed by the SHA-256
of the file's bytes: a later run with the same file reads them back with NumPy and,
with the ``onnx`` engine's graph cached too, never imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import tempfile
import zipfile
from typing import Sequence

import numpy as np

from fruits import config
from fruits.engines.mobilenet import build_keras_backbone, seed_keras
from fruits.featurize.shapes import INPUT_SIZE
from fruits.storage import location

IMAGENET = "imagenet"
RANDOM = "random"

#: Changes whenever what the arrays cache holds changes, so older entries are not reused.
ARRAYS_CACHE_VERSION = "keras-get-weights-v1"

RANDOM_WARNING = (
    "WEIGHTS ARE RANDOM: no ImageNet weights were found, so these features are "
    "meaningless (plumbing only). Set FRUITS_WEIGHTS or the 'weights' parameter to a "
    "MobileNetV2 .h5 file, or run where Keras can download 'imagenet'."
)


class MissingWeightsError(RuntimeError):
    """No usable weights: the message says what was tried and how to fix it."""


@dataclasses.dataclass(frozen=True)
class ResolvedWeights:
    """Weights ready to ship to workers, with their provenance."""

    source: str
    is_random: bool
    sha256: str
    arrays: tuple = dataclasses.field(default=(), repr=False, compare=False)
    model_bytes: bytes | None = dataclasses.field(default=None, repr=False, compare=False)

    def describe(self) -> str:
        """One line for logs and the report."""
        kind = "RANDOM (plumbing only)" if self.is_random else "pretrained"
        return f"{kind} weights from {self.source} (sha256 {self.sha256[:12]}...)"


def fingerprint(arrays: Sequence[np.ndarray]) -> str:
    """SHA-256 over every array's shape, dtype and bytes, in order."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.shape}{array.dtype.str}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def resolve_weights(
    requested: str | None, *, allow_random: bool, seed: int = 0, input_size: int = INPUT_SIZE
) -> ResolvedWeights:
    """Load weights on the driver following the documented order.

    Parameters
    ----------
    requested : str or None
        The ``weights`` parameter: ``"imagenet"``, ``"random"``, a local or ``s3://``
        ``.h5`` path, or ``None`` for ``FRUITS_WEIGHTS`` then Keras' cache/download.
    allow_random : bool
        True for the demo only: when nothing is found, fall back to random weights
        (seeded, identical on every worker) instead of raising.
    seed : int
        Seed for random weights.

    Raises
    ------
    MissingWeightsError
        When an explicitly given source fails, or nothing is found outside the demo.
    """
    if requested is not None:
        return _load(requested, seed=seed, input_size=input_size, origin="the 'weights' parameter")
    from_env = config.weights_from_env()
    if from_env is not None:
        return _load(from_env, seed=seed, input_size=input_size, origin=config.WEIGHTS_ENV)
    try:
        return _load(IMAGENET, seed=seed, input_size=input_size, origin="Keras' cache or download")
    except MissingWeightsError as exc:
        if allow_random:
            return _random(seed, input_size)
        raise MissingWeightsError(
            f"No MobileNetV2 ImageNet weights found: the 'weights' parameter is not set, "
            f"{config.WEIGHTS_ENV} is not set, and {exc}. Set {config.WEIGHTS_ENV}=/path/to/"
            f"mobilenet_v2_no_top.h5 or pass the 'weights' parameter (-p weights PATH)."
        ) from exc


def _load(value: str, *, seed: int, input_size: int, origin: str) -> ResolvedWeights:
    if value == RANDOM:
        return _random(seed, input_size)
    if value == IMAGENET:
        return _keras_imagenet(input_size)
    return _from_file(value, input_size=input_size, origin=origin)


def _from_file(path: str, *, input_size: int, origin: str) -> ResolvedWeights:
    local_path, cleanup = local_copy(path, origin)
    try:
        cache_path = _arrays_cache_path(_file_sha256(local_path))
        arrays = _read_arrays(cache_path)
        if arrays is None:
            try:
                model = build_keras_backbone(local_path, input_size=input_size)
            except Exception as exc:  # Keras raises ValueError, OSError or h5py errors
                raise MissingWeightsError(
                    f"the weights file {path!r} (from {origin}) could not be loaded into "
                    f"MobileNetV2(include_top=False, pooling='avg'): {exc}"
                ) from exc
            arrays = tuple(model.get_weights())
            _write_arrays(cache_path, arrays)
    finally:
        if cleanup:
            os.unlink(local_path)
    return ResolvedWeights(source=path, is_random=False, sha256=fingerprint(arrays), arrays=arrays)


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _arrays_cache_path(file_sha256: str):
    """Where the arrays of the weights file with this content are kept (the weights do not
    depend on the input size, so one entry serves every ``image_size``)."""
    return config.cache_dir() / "weights" / f"{file_sha256}-{ARRAYS_CACHE_VERSION}.npz"


def _read_arrays(path) -> tuple[np.ndarray, ...] | None:
    """The cached arrays, in ``model.get_weights()`` order, or ``None`` (absent or unreadable)."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            return tuple(stored[f"arr_{index}"] for index in range(len(stored.files)))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):  # absent, truncated, foreign: load again
        return None


def _write_arrays(path, arrays: Sequence[np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, *arrays)
    config.write_cache_file(path, buffer.getvalue())


def local_copy(path: str, origin: str, env: str = config.WEIGHTS_ENV) -> tuple[str, bool]:
    """Return a local file for ``path`` and whether it is a temporary copy the caller removes.

    Remote URIs (``s3://``, anything fsspec knows) are downloaded to a temporary file;
    ``env`` names the setting the error message suggests.
    """
    on_disk = location.local_path(path)
    if on_disk is not None:
        if not os.path.isfile(on_disk):
            raise MissingWeightsError(
                f"the weights file {path!r} (from {origin}) does not exist. Set "
                f"{env} or the 'weights' parameter to an existing file."
            )
        return on_disk, False
    try:
        with location.open(path, "rb") as remote, tempfile.NamedTemporaryFile(
            suffix=os.path.splitext(path)[1], delete=False
        ) as local:
            local.write(remote.read())
    except Exception as exc:
        raise MissingWeightsError(
            f"the weights file {path!r} (from {origin}) could not be read: {exc}"
        ) from exc
    return local.name, True


#: Where Keras downloads MobileNetV2's ImageNet weights from (``keras.applications.mobilenet_v2``).
IMAGENET_BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
#: Input sizes Keras has ImageNet weights for; any other size gets the 224 ones (as Keras does).
IMAGENET_SIZES = (96, 128, 160, 192, 224)
#: Bound on the download (a 9 MB file); an unreachable host fails at once.
IMAGENET_DOWNLOAD_SECONDS = 120


def imagenet_file_name(input_size: int) -> str:
    """The file Keras keeps for ``MobileNetV2(alpha=1.0, include_top=False, weights="imagenet")``.

    >>> imagenet_file_name(224), imagenet_file_name(300) == imagenet_file_name(224)
    ('mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5', True)
    """
    rows = input_size if input_size in IMAGENET_SIZES else 224
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5"


def _keras_imagenet(input_size: int) -> ResolvedWeights:
    """``"imagenet"``: the file in Keras' own cache, downloaded there first if absent, as Keras would.

    Asking Keras for them imported it (about 6 s on 2 cores) on every run, even when the
    arrays were cached or the machine was offline and the demo was going to fall back to
    random weights. The same file at the same place, read like any weights file.
    """
    name = imagenet_file_name(input_size)
    path = config.keras_cache_dir() / name
    if not path.is_file():
        url = IMAGENET_BASE_URL + name
        try:
            _download(url, path)
        except OSError as exc:  # URLError, timeouts, a full disk
            raise MissingWeightsError(
                f"'imagenet' weights are not in Keras' cache ({config.keras_cache_dir()}) "
                f"and could not be downloaded from {url} ({type(exc).__name__}: {exc})"
            ) from exc
    resolved = _from_file(str(path), input_size=input_size, origin="Keras' cache")
    return dataclasses.replace(resolved, source=IMAGENET)


def _download(url: str, path) -> None:
    """``url`` into ``path`` through a temporary file beside it: a broken download leaves nothing."""
    import urllib.request

    path.parent.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(url, timeout=IMAGENET_DOWNLOAD_SECONDS) as response, \
            tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as partial:
        try:
            for block in iter(lambda: response.read(1 << 20), b""):
                partial.write(block)
        except BaseException:
            os.unlink(partial.name)
            raise
    os.replace(partial.name, path)


def _random(seed: int, input_size: int) -> ResolvedWeights:
    """Keras' seeded initial weights, kept in the cache folder like a weights file's arrays.

    Building them needs Keras, whose import alone takes about 7 s of the 9 s a plumbing run
    (the demo without weights, most tests) spent on them on 2 cores; they depend only on
    the seed and the Keras and TensorFlow versions (not on the input size), so the second
    run reads them back without importing Keras.
    """
    path = _random_cache_path(seed)
    arrays = _read_arrays(path)
    if arrays is None:
        seed_keras(seed)
        arrays = tuple(build_keras_backbone(None, input_size=input_size).get_weights())
        _write_arrays(path, arrays)
    return ResolvedWeights(
        source=f"{RANDOM} (seed {seed})", is_random=True, sha256=fingerprint(arrays), arrays=arrays
    )


def _random_cache_path(seed: int):
    """Where the random arrays of ``seed`` are kept: named by the versions of Keras and its TensorFlow."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(*names: str) -> str:
        for name in names:
            try:
                return version(name)
            except PackageNotFoundError:
                continue
        return "none"

    versions = f"keras{installed('keras')}-tf{installed('tensorflow-cpu', 'tensorflow')}"
    return config.cache_dir() / "weights" / f"random-seed{seed}-{versions}-{ARRAYS_CACHE_VERSION}.npz"
