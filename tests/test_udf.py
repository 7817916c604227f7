import functools
import io
import os

import numpy as np
import pandas as pd
from PIL import Image

from fruits.engines.stand_in import random_projection_predictor
from fruits.featurize.batches import MAPPED_SCHEMA, featurize_contents, make_feature_mapper


def jpeg(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (100, 100), colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_each_row_gets_features_or_a_reason_in_order():
    calls = []
    model = random_projection_predictor(0)

    def predict(batch):
        calls.append(len(batch))
        return model(batch)

    contents = pd.Series([jpeg((255, 0, 0)), b"", jpeg((0, 255, 0)), b"garbage", jpeg((0, 0, 255))])
    result = featurize_contents(contents, predict, batch_size=2)
    assert list(result["error"].isna()) == [True, False, True, False, True]
    assert result["error"][1] == "empty file (0 bytes)"
    assert result["features"][1] is None
    assert all(result["features"][i].shape == (1280,) for i in (0, 2, 4))
    assert calls == [2, 1]  # never more than batch_size images per network call
    direct = model(np.asarray(Image.open(io.BytesIO(jpeg((0, 255, 0)))).resize((224, 224)))[None])[0]
    np.testing.assert_allclose(result["features"][2], direct, rtol=1e-5, atol=1e-5)


def _counting_factory(marker_dir: str, seed: int):
    """Plumbing predictor that leaves one file per build: <pid>-<n>."""
    pid = os.getpid()
    builds = len([name for name in os.listdir(marker_dir) if name.startswith(f"{pid}-")])
    open(os.path.join(marker_dir, f"{pid}-{builds}"), "w").close()
    return random_projection_predictor(seed)


def test_model_is_built_once_per_python_worker_not_per_task(spark, tmp_path):
    markers = tmp_path / "builds"
    markers.mkdir()
    images = [jpeg((i * 10 % 256, 80, 160)) for i in range(48)]
    df = spark.createDataFrame([(f"img{i}", "fruit", None, data) for i, data in enumerate(images)],
                               "path string, label string, read_error string, content binary")
    mapper = make_feature_mapper(
        functools.partial(_counting_factory, str(markers), 3), cache_key=f"count-{tmp_path.name}", batch_size=4
    )
    rows = df.repartition(12).mapInArrow(mapper, MAPPED_SCHEMA).collect()
    assert len(rows) == 48 and all(row.error is None for row in rows)
    builds = sorted(os.listdir(markers))
    pids = {name.split("-")[0] for name in builds}
    assert len(builds) == len(pids), f"a worker built the model twice: {builds}"
    # Not "at most 2": earlier jobs of the shared session (a whole run, say) can leave more idle Python
    # workers in the pool than there are cores (4 seen after test_engine_registry), and tasks go to them in turn.
    assert len(builds) < 12, f"12 tasks must share fewer builds than tasks: {builds}"
    expected = random_projection_predictor(3)
    by_path = {row.path: np.array(row.features, dtype=np.float32) for row in rows}
    pixels = np.asarray(Image.open(io.BytesIO(images[5])).resize((224, 224)))
    np.testing.assert_allclose(by_path["img5"], expected(pixels[None])[0], rtol=1e-5, atol=1e-5)


def test_mapped_rows_keep_path_and_label_and_put_the_read_error_first(spark):
    from fruits.engines.stand_in import random_projection_predictor as predictor

    rows = [("a.jpg", "red", None, jpeg((255, 0, 0))), ("b.jpg", "red", None, b"garbage"),
            ("c.jpg", "blue", "could not be read: gone", None), ("d.jpg", "blue", None, jpeg((0, 0, 255)))]
    df = spark.createDataFrame(rows, "path string, label string, read_error string, content binary").coalesce(1)
    mapper = make_feature_mapper(functools.partial(predictor, 5), cache_key="mapped-rows", batch_size=2)
    out = {row.path: row for row in df.mapInArrow(mapper, MAPPED_SCHEMA).collect()}
    assert [(out[p].label, out[p].error) for p in "abcd" for p in [f"{p}.jpg"]] == [
        ("red", None), ("red", "not a recognised image format"), ("blue", "could not be read: gone"), ("blue", None)]
    assert out["b.jpg"].features is None and out["c.jpg"].features is None
    pixels = np.asarray(Image.open(io.BytesIO(jpeg((0, 0, 255)))).resize((224, 224)))
    np.testing.assert_allclose(out["d.jpg"].features, predictor(5)(pixels[None])[0], rtol=1e-5, atol=1e-5)


def test_worker_cache_keeps_the_three_predictors_used_last(monkeypatch):
    """Like pyspark's ModelCache: a 4th model evicts the least recently used, a hit refreshes an entry."""
    from collections import OrderedDict

    from fruits.featurize import batches as udf

    monkeypatch.setattr(udf, "_PREDICTORS", OrderedDict())
    built = []

    def factory(name):
        def build():
            built.append(name)
            return lambda batch, name=name: name
        return build

    for name in ("a", "b", "c"):
        udf.cached_predictor(name, factory(name))
    assert udf.cached_predictor("a", factory("a"))(None) == "a"  # a hit: "a" becomes the most recent
    udf.cached_predictor("d", factory("d"))
    assert list(udf._PREDICTORS) == ["c", "a", "d"], "the 4th model evicts b, the least recently used"
    assert udf.PREDICTOR_CACHE_SIZE == 3 and built == ["a", "b", "c", "d"]
    udf.cached_predictor("b", factory("b"))
    assert built[-1] == "b" and list(udf._PREDICTORS) == ["a", "d", "b"]


def test_partitions_come_in_whole_waves_of_about_1024_images():
    from types import SimpleNamespace

    from fruits.featurize.step import choose_partitions

    def session(cores):
        return SimpleNamespace(sparkContext=SimpleNamespace(defaultParallelism=cores))

    assert choose_partitions(session(2), 20_622, None) == 22  # 11 waves of 2 tasks, about 937 images each
    assert choose_partitions(session(2), 2_040, None) == 4  # never fewer than 2 waves
    assert choose_partitions(session(2), 1, None) == 4
    assert choose_partitions(session(12), 1_000_000, None) == 984  # 82 waves of 12
    assert choose_partitions(session(2), 20_622, 7) == 7  # the run's own count wins
