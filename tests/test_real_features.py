"""With the real ImageNet weights: Spark's features equal a plain one-process Keras call."""

import numpy as np
import pytest

from fruits import engines
from fruits.featurize.step import featurize
from fruits.inputs.listing import check_input, list_files
from fruits.inputs.reading import read_images
from tests.conftest import copy_slice

pytestmark = pytest.mark.slow


def plain_keras_features(paths, weights_path):
    """The study's recipe, in one process: PIL resize, img_to_array, preprocess_input, predict."""
    import keras
    from keras.applications.mobilenet_v2 import preprocess_input
    from PIL import Image

    model = keras.applications.MobileNetV2(
        weights=str(weights_path), include_top=False, pooling="avg", input_shape=(224, 224, 3)
    )
    batch = np.stack([
        keras.utils.img_to_array(Image.open(path).convert("RGB").resize([224, 224])) for path in paths
    ])
    return model.predict(preprocess_input(batch), verbose=0)


@pytest.mark.parametrize("engine", ["keras", "onnx"])
def test_spark_features_equal_plain_keras(spark, real_images, real_weights, tmp_path, engine):
    images = copy_slice(real_images / "Test", tmp_path / "Test", classes=4, per_class=6)
    listing = list_files(spark, check_input(str(images)), str(tmp_path / "listing"))
    images_df = read_images(listing.images(), partitions=3)
    prepared = _prepared(engine, real_weights)
    rows = featurize(images_df, prepared, batch_size=5, threads_per_task=1, partitions=3).collect()
    assert len(rows) == 24 and all(row.error is None for row in rows)
    paths = sorted(row.path for row in rows)
    by_path = {row.path: np.asarray(row.features, dtype=np.float32) for row in rows}
    spark_features = np.stack([by_path[path] for path in paths])
    reference = plain_keras_features(paths, real_weights)
    relative = np.abs(spark_features - reference).max(axis=1) / np.abs(reference).max(axis=1)
    assert relative.max() <= 1e-4, f"largest relative difference {relative.max():.2e}"
    assert {row.label for row in rows} == {p.name for p in images.iterdir()}


def _prepared(name, weights, *, input_size=224):
    engine = engines.get(name)
    return engine.prepare(engine.resolve(str(weights), allow_random=False), input_size=input_size)


def _spark_features(spark, images_dir, engine):
    listing = list_files(spark, check_input(str(images_dir)), str(images_dir) + "-listing")
    images_df = read_images(listing.images(), partitions=2)
    rows = featurize(images_df, engine, batch_size=4, threads_per_task=1, partitions=2).collect()
    assert all(row.error is None for row in rows)
    return {row.path: np.asarray(row.features, dtype=np.float32) for row in rows}


def test_tflite_engine_reads_the_pooled_features_of_the_int8_model(spark, real_images, real_tflite,
                                                                   real_weights, tmp_path):
    """Same values as the graph's own pooled tensor; close in direction to Keras' features."""
    from ai_edge_litert.interpreter import Interpreter
    from PIL import Image

    images = copy_slice(real_images / "Test", tmp_path / "Test", classes=3, per_class=4)
    tflite = _prepared("tflite", real_tflite)
    features = _spark_features(spark, images, tflite)
    path = sorted(features)[0]
    reference = Interpreter(model_path=str(real_tflite), experimental_preserve_all_tensors=True)
    reference.allocate_tensors()
    pooled = next(d for d in reference.get_tensor_details() if "AvgPool" in d["name"])
    pixels = np.asarray(Image.open(path).convert("RGB").resize((224, 224), Image.Resampling.BICUBIC))
    reference.set_tensor(reference.get_input_details()[0]["index"], pixels[None])
    reference.invoke()
    scale, zero = pooled["quantization"]
    expected = (reference.get_tensor(pooled["index"]).reshape(-1).astype(np.float32) - zero) * scale
    np.testing.assert_allclose(features[path], expected, rtol=0, atol=1e-6)
    keras = _spark_features(spark, images, _prepared("keras", real_weights))
    cosine = [float(a @ keras[p] / np.linalg.norm(a) / np.linalg.norm(keras[p])) for p, a in features.items()]
    assert min(cosine) > 0.7, f"int8 features should point the same way as Keras': {cosine}"


def test_native_size_engine_gives_1280_features(spark, real_images, real_weights, tmp_path):
    images = copy_slice(real_images / "Test", tmp_path / "Test", classes=2, per_class=3)
    engine = _prepared("onnx", real_weights, input_size=100)
    features = _spark_features(spark, images, engine)
    assert len(features) == 6 and {f.shape for f in features.values()} == {(1280,)}
