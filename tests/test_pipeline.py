import json

import pytest
from pyspark.ml.feature import PCAModel
from pyspark.sql.types import ArrayType, FloatType, StringType, StructField, StructType

from fruits.storage.layout import OutputLayout
from fruits.params import RunParams
from fruits.run.execute import execute
from fruits.run.plan import prepare

FEATURES_SCHEMA = StructType([
    StructField("path", StringType()), StructField("label", StringType()),
    StructField("features", ArrayType(FloatType())),
])


@pytest.fixture(scope="module")
def finished_run(spark, tmp_path_factory):
    """One run over 30 synthetic images, 2 broken files and a text file, with random weights."""
    from fruits.run.demo_data import generate_demo_images

    root = tmp_path_factory.mktemp("run")
    images = generate_demo_images(root / "images", per_class=5, seed=2)
    (images / "Synthetic Kiwi" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (images / "Synthetic Lime" / "empty.png").write_bytes(b"")
    params = RunParams(input_path=str(images), output_dir=str(root / "out"), weights="random", k=8)
    prepared = prepare(params)
    return prepared, execute(spark, prepared)


def test_outputs_have_the_documented_schemas(spark, finished_run):
    prepared, result = finished_run
    layout = result.layout
    features = spark.read.parquet(layout.features)
    assert features.schema == FEATURES_SCHEMA
    assert {len(row.features) for row in features.select("features").collect()} == {1280}
    pca = spark.read.parquet(layout.pca)
    assert pca.schema.simpleString() == "struct<path:string,label:string,pca_features:array<float>>"
    assert {len(row.pca_features) for row in pca.collect()} == {8}
    assert PCAModel.load(layout.pca_model).getK() == 8
    assert spark.read.parquet(layout.rejected).schema.simpleString() == "struct<path:string,reason:string>"


def test_every_file_is_featurized_or_rejected_with_a_reason(spark, finished_run):
    prepared, result = finished_run
    counts = result.manifest["counts"]
    assert counts == {"input": 33, "images": 31, "featurized": 30, "rejected": 3, "featurized_this_run": 30}
    rejected = {row.path.rsplit("/", 1)[1]: row.reason for row in spark.read.parquet(result.layout.rejected).collect()}
    assert set(rejected) == {"broken.jpg", "empty.png", "SYNTHETIC-DATA.txt"}
    assert rejected["empty.png"] == "empty file (0 bytes)"
    by_label = {row.label: row["count"] for row in spark.read.parquet(result.layout.features).groupBy("label").count()
                .collect()}
    assert result.manifest["featurized_by_class"] == dict(sorted(by_label.items()))
    assert set(by_label) == {"Synthetic Apple", "Synthetic Banana", "Synthetic Lime", "Synthetic Orange",
                      "Synthetic Grape", "Synthetic Kiwi"}
    paths = spark.read.parquet(result.layout.pca).select("path").collect()
    assert all(row.path.startswith(prepared.input_path) for row in paths)


def test_manifest_records_parameters_versions_variance_and_timings(finished_run):
    prepared, result = finished_run
    with open(result.layout.manifest) as handle:
        manifest = json.load(handle)
    assert manifest["parameters"]["k"] == 8 and manifest["k"] == 8
    assert manifest["weights"]["random"] is True
    assert {"pyspark", "keras", "numpy", "python"} <= set(manifest["versions"])
    assert len(manifest["explained_variance"]) == 8 and len(manifest["cumulative_variance"]) == 8
    assert manifest["cumulative_variance"][-1] == pytest.approx(sum(manifest["explained_variance"]))
    assert {"read", "featurize", "pca", "write", "total"} <= set(manifest["seconds"])
    assert manifest["images_per_second"] > 0
    assert manifest["classes"]["Synthetic Kiwi"] == 6


def test_existing_run_needs_an_explicit_mode(finished_run):
    prepared, result = finished_run
    params = RunParams(input_path=prepared.input_path, output_dir=prepared.layout.root, weights="random")
    with pytest.raises(ValueError, match="already holds a run.*mode='overwrite'"):
        prepare(params)


def test_output_inside_input_is_refused(demo_images):
    params = RunParams(input_path=str(demo_images), output_dir=str(demo_images / "out"), weights="random")
    with pytest.raises(ValueError, match="output_dir .* is inside input_path"):
        prepare(params)


def test_layout_paths_work_for_s3_uris():
    assert OutputLayout("s3://b/run/").pca_model == "s3://b/run/pca_model"
