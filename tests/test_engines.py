"""Engines agree with the Keras reference (plumbing: seeded random weights, small input); the int8
engine records and reuses its calibration, and stays close to fp32 on real images (marked slow).

Every engine is reached through the registry, as the run, the projection and the workers reach it."""

import numpy as np
import pytest

from fruits import config, engines
from fruits.cli import build_parser, resolve_parameters
from fruits.params import RunParams


def prepare_engine(name, weights, **options):
    return engines.get(name).prepare(weights, **options)


def build_predictor(prepared, *, threads=1):
    return engines.get(prepared.name).build(prepared.payload, threads=threads, input_size=prepared.input_size)


@pytest.fixture(scope="module")
def random_weights():
    return engines.get("onnx").resolve("random", allow_random=False, seed=7)


def test_onnx_engine_equals_keras_and_is_cached(random_weights, tmp_path, monkeypatch):
    monkeypatch.setenv("FRUITS_CACHE", str(tmp_path))
    onnx = prepare_engine("onnx", random_weights, input_size=64)
    keras = prepare_engine("keras", random_weights, input_size=64)
    pixels = np.random.default_rng(0).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    fast = build_predictor(onnx)(pixels)
    reference = build_predictor(keras)(pixels)
    assert fast.shape == (5, 1280) and fast.dtype == np.float32
    relative = np.abs(fast - reference).max(axis=1) / np.abs(reference).max(axis=1)
    assert relative.max() <= 1e-4
    cached = list((config.cache_dir() / "onnx").glob("*.onnx"))
    assert len(cached) == 1
    assert prepare_engine("onnx", random_weights, input_size=64).sha256 == onnx.sha256


def test_predictor_identity_depends_on_engine_weights_size_and_threads(random_weights):
    engine = prepare_engine("keras", random_weights, input_size=64)
    assert engine.cache_key(1) != engine.cache_key(2)
    other = engines.get("keras").resolve("random", allow_random=False, seed=8)
    assert prepare_engine("keras", other, input_size=64).cache_key(1) != engine.cache_key(1)


def test_engine_parameters_are_validated():
    assert RunParams().engine == "onnx"
    with pytest.raises(ValueError, match="^engine "):
        RunParams(engine="torch").validate()
    with pytest.raises(ValueError, match="^image_size must be 224 with engine 'tflite'"):
        RunParams(engine="tflite", image_size=100).validate()
    with pytest.raises(ValueError, match="^image_size "):
        RunParams(image_size=16).validate()


def _image_paths(folder):
    """The image paths a run's listing would give, without Spark (the listing's own rule per file)."""
    from fruits.inputs.listing import skip_reason

    files = sorted(path for path in folder.rglob("*") if path.is_file())
    return [str(path) for path in files if skip_reason(str(path), path.stat().st_size) is None]


def test_int8_calibration_images_are_spread_over_the_sorted_paths():
    from fruits.engines.onnx_int8 import choose_calibration

    paths = [f"/data/{label}/{index:03d}.jpg" for label in "dcba" for index in range(50)]
    chosen = choose_calibration(paths, count=8)
    assert chosen == tuple(sorted(paths)[i * 25] for i in range(8))
    assert {path.split("/")[2] for path in chosen} == set("abcd")
    assert choose_calibration(paths[:3], count=100) == tuple(sorted(paths[:3]))
    with pytest.raises(ValueError, match="^count must be a positive integer, got 0"):
        choose_calibration(paths, count=0)
    with pytest.raises(ValueError, match="needs at least one image to calibrate on"):
        choose_calibration([], count=5)


def test_int8_engine_is_deterministic_cached_and_records_its_calibration(random_weights, demo_images, tmp_path,
                                                                         monkeypatch):
    monkeypatch.setenv("FRUITS_CACHE", str(tmp_path / "cache"))
    paths = _image_paths(demo_images)
    int8 = prepare_engine("onnx-int8", random_weights, input_size=64, inputs=paths)
    record = int8.details["calibration"]
    assert record["images"] == len(paths) == 30 and record["paths"] == sorted(paths)
    assert len(list((config.cache_dir() / "onnx").glob("mobilenet_v2-int8-*.onnx"))) == 1
    fp32 = prepare_engine("onnx", random_weights, input_size=64)
    assert int8.sha256 != fp32.sha256 and len(int8.payload) < len(fp32.payload) / 2
    for cached in (config.cache_dir() / "onnx").glob("mobilenet_v2-int8-*.onnx"):
        cached.unlink()
    # A continued run offers its own (other) images too: the recorded calibration wins.
    again = prepare_engine("onnx-int8", random_weights, input_size=64, inputs=paths[:2],
                           recorded={"name": "onnx-int8", "calibration": record})
    assert again.sha256 == int8.sha256, "quantizing the same graph on the same images must give the same bytes"
    assert again.details == int8.details
    pixels = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    features = build_predictor(int8)(pixels)
    assert features.shape == (3, 1280) and features.dtype == np.float32 and np.isfinite(features).all()


def test_int8_engine_refuses_missing_or_changed_calibration(random_weights, demo_images, tmp_path, monkeypatch):
    monkeypatch.setenv("FRUITS_CACHE", str(tmp_path))
    with pytest.raises(ValueError, match="^engine 'onnx-int8' needs calibration images"):
        prepare_engine("onnx-int8", random_weights, input_size=64)
    with pytest.raises(ValueError, match="^engine 'onnx-int8' needs calibration images"):
        prepare_engine("onnx-int8", random_weights, input_size=64, recorded={"name": "onnx"})
    paths = _image_paths(demo_images)[:4]
    record = prepare_engine("onnx-int8", random_weights, input_size=64, inputs=paths).details["calibration"]
    with open(paths[0], "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ValueError, match="calibration images recorded by the previous run changed"):
        prepare_engine("onnx-int8", random_weights, input_size=64, recorded={"calibration": record})


def test_engines_that_do_not_calibrate_ignore_the_run_s_images(random_weights, tmp_path, monkeypatch):
    monkeypatch.setenv("FRUITS_CACHE", str(tmp_path))
    plain = prepare_engine("onnx", random_weights, input_size=64)
    offered = prepare_engine("onnx", random_weights, input_size=64, inputs=["/nowhere/a.jpg"],
                             recorded={"name": "onnx", "calibration": {"paths": ["/nowhere/b.jpg"]}})
    assert offered.sha256 == plain.sha256 and offered.details == {} == plain.details


def test_int8_engine_name_is_accepted_everywhere_an_engine_is_named():
    from pathlib import Path

    assert "onnx-int8" in engines.names()
    assert RunParams(engine="onnx-int8", image_size=100).validate().engine == "onnx-int8"
    args = build_parser().parse_args(["run", "-p", "engine", "onnx-int8", "--output", "/tmp/fruits-unused"])
    assert resolve_parameters(args)["engine"] == "onnx-int8"  # what `fruits run -p` checks
    for notebook in ("01-featurize-local.py", "02-featurize-emr.py"):
        line = next(line for line in (Path(__file__).parents[1] / "notebooks" / notebook).read_text().splitlines()
                    if line.startswith("engine = "))
        assert all(f'"{name}"' in line for name in engines.names()), f"{notebook}: {line}"


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.slow
def test_int8_features_point_where_fp32_features_point(spark, real_images, real_weights, tmp_path, monkeypatch):
    """Calibrated as a run on the whole Test split would be; the first image of 40 classes compared in Spark."""
    from fruits.featurize.step import featurize
    from fruits.inputs.listing import check_input, list_files
    from fruits.inputs.reading import read_images
    from fruits.engines.onnx_int8 import choose_calibration
    from tests.conftest import copy_slice

    monkeypatch.setenv("FRUITS_CACHE", str(tmp_path / "cache"))
    weights = engines.get("onnx-int8").resolve(str(real_weights), allow_random=False)
    split = _image_paths(real_images / "Test")
    int8 = prepare_engine("onnx-int8", weights, input_size=224, inputs=split)
    assert int8.details["calibration"]["paths"] == list(choose_calibration(split))
    images = copy_slice(real_images / "Test", tmp_path / "Test", classes=40, per_class=1)
    listing = list_files(spark, check_input(str(images)), str(tmp_path / "listing"))
    assert listing.image_count == 40
    features = {}
    for engine in (int8, prepare_engine("onnx", weights, input_size=224)):
        frame = read_images(listing.images(), partitions=2)
        rows = featurize(frame, engine, batch_size=8, threads_per_task=1, partitions=2).collect()
        assert all(row.error is None for row in rows)
        features[engine.name] = np.stack([np.asarray(row.features) for row in sorted(rows, key=lambda r: r.path)])
    cosine = _cosines(features["onnx-int8"], features["onnx"])
    # 7-bit weights, measured on these 40 images on an AVX2-only CPU: median 0.9962, minimum 0.9930
    # (full-range weights saturate there: 0.9879 / 0.9797; see fruits.engines.onnx_int8).
    assert np.median(cosine) >= 0.995 and cosine.min() >= 0.99, (np.median(cosine), cosine.min())


def test_int8_run_records_its_calibration_and_an_incremental_run_reuses_it(spark, tmp_path, monkeypatch):
    """The manifest names the calibration images; new images do not change the graph of an incremental run."""
    import shutil

    from fruits.run.demo_data import generate_demo_images
    from fruits.run.execute import execute
    from fruits.run.plan import prepare

    monkeypatch.setenv("FRUITS_CACHE", str(tmp_path / "cache"))
    images = generate_demo_images(tmp_path / "images", per_class=3, seed=4)
    params = RunParams(input_path=str(images), output_dir=str(tmp_path / "out"), weights="random", k=4,
                       engine="onnx-int8", image_size=64)
    first = execute(spark, prepare(params))
    recorded = first.manifest["engine"]["calibration"]
    assert recorded["images"] == 18 and recorded["paths"] == sorted(recorded["paths"])
    assert recorded["rule"].startswith("up to 100 images evenly spaced")
    extra = generate_demo_images(tmp_path / "extra", per_class=1, seed=12)
    for source in sorted(extra.glob("*/*.jpg")):
        shutil.copy(source, images / source.parent.name / f"new_{source.name}")
    grown = execute(spark, prepare(RunParams(**{**params.to_dict(), "mode": "incremental"})))
    assert grown.manifest["counts"]["featurized_this_run"] == 6
    assert grown.manifest["engine"]["calibration"] == recorded
    assert grown.manifest["engine"]["sha256"] == first.manifest["engine"]["sha256"]
