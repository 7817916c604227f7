"""Engines agree with the Keras reference; plumbing only (seeded random weights, small input)."""

import numpy as np
import pytest

from fruits import config
from fruits.engines import build_predictor, prepare_engine
from fruits.params import RunParams
from fruits.weights import resolve_weights


@pytest.fixture(scope="module")
def random_weights():
    return resolve_weights("random", allow_random=False, seed=7)


def test_onnx_engine_equals_keras_and_is_cached(random_weights, tmp_path, monkeypatch):
    monkeypatch.setenv("FRUITS_CACHE", str(tmp_path))
    onnx = prepare_engine("onnx", random_weights, input_size=64)
    keras = prepare_engine("keras", random_weights, input_size=64)
    pixels = np.random.default_rng(0).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    fast = build_predictor("onnx", onnx.payload, threads=1, input_size=64)(pixels)
    reference = build_predictor("keras", keras.payload, threads=1, input_size=64)(pixels)
    assert fast.shape == (5, 1280) and fast.dtype == np.float32
    relative = np.abs(fast - reference).max(axis=1) / np.abs(reference).max(axis=1)
    assert relative.max() <= 1e-4
    cached = list((config.cache_dir() / "onnx").glob("*.onnx"))
    assert len(cached) == 1
    assert prepare_engine("onnx", random_weights, input_size=64).sha256 == onnx.sha256


def test_predictor_identity_depends_on_engine_weights_size_and_threads(random_weights):
    engine = prepare_engine("keras", random_weights, input_size=64)
    assert engine.cache_key(1) != engine.cache_key(2)
    other = resolve_weights("random", allow_random=False, seed=8)
    assert prepare_engine("keras", other, input_size=64).cache_key(1) != engine.cache_key(1)


def test_engine_parameters_are_validated():
    assert RunParams().engine == "onnx"
    with pytest.raises(ValueError, match="^engine "):
        RunParams(engine="torch").validate()
    with pytest.raises(ValueError, match="^image_size must be 224 with engine 'tflite'"):
        RunParams(engine="tflite", image_size=100).validate()
    with pytest.raises(ValueError, match="^image_size "):
        RunParams(image_size=16).validate()
