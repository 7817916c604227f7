"""Evaluation metrics, and projecting new images like a finished run."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fruits.run.demo_data import CLASSES, generate_demo_images, generate_demo_training_images
from fruits.analysis.evaluate import scores
from fruits.storage.layout import current_run
from fruits.params import RunParams
from fruits.run.execute import execute
from fruits.run.plan import prepare
from fruits.run.projection import IncompatibleRunError, project_images
from tests.conftest import copy_slice
from tests.test_emr import moto  # noqa: F401  (fixture: a moto S3 server on 127.0.0.1)


def test_scores_compute_accuracy_macro_f1_and_confusions():
    truth = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 0, 1, 1, 1, 1])
    result = scores(truth, predicted, ["apple", "kiwi", "lime"])
    assert result["accuracy"] == pytest.approx(4 / 6)
    f1_apple, f1_kiwi, f1_lime = 0.8, 2 * 0.5 * 1 / 1.5, 0.0
    assert result["macro_f1"] == pytest.approx((f1_apple + f1_kiwi + f1_lime) / 3)
    assert result["per_class_accuracy"] == pytest.approx({"apple": 2 / 3, "kiwi": 1.0, "lime": 0.0})
    assert result["most_confused"] == [{"true": "apple", "predicted": "kiwi", "count": 1},
                                       {"true": "lime", "predicted": "kiwi", "count": 1}]


@pytest.fixture(scope="module")
def evaluated_run(spark, tmp_path_factory):
    """Synthetic train/test sets; the test set has one class the training set lacks."""
    root = tmp_path_factory.mktemp("eval")
    train = generate_demo_images(root / "train", per_class=8, seed=21, classes=CLASSES[:5])
    test = generate_demo_images(root / "test", per_class=6, seed=22)
    params = RunParams(input_path=str(test), output_dir=str(root / "out"), weights="random", k=5,
                       train_path=str(train))
    return root, execute(spark, prepare(params))


def test_evaluation_reports_scores_sweep_and_unscored_classes(evaluated_run):
    root, result = evaluated_run
    evaluation = result.manifest["evaluation"]
    assert evaluation["classes_scored"] == 5 and evaluation["train_images"] == 40
    assert evaluation["test_only_classes"] == ["Synthetic Kiwi"] and evaluation["test_images_not_scored"] == 6
    assert evaluation["test_images_scored"] == 30
    assert 0 <= evaluation["accuracy"] <= 1 and 0 <= evaluation["macro_f1"] <= 1
    assert [row["k"] for row in evaluation["sweep"]] == [5, 10, 20, 50, 100, 200, 1280]
    assert evaluation["sweep"][-1]["cumulative_variance"] == 1.0
    assert (Path(result.layout.root) / "classifier").is_dir()


def test_projection_reproduces_the_runs_pca_features_and_predicts(spark, evaluated_run):
    root, result = evaluated_run
    new = root / "new"
    source = Path(result.prepared.input_path)
    for folder in ("Synthetic Apple", "Synthetic Lime"):
        (new / folder).mkdir(parents=True)
        for image in sorted((source / folder).iterdir())[:2]:
            shutil.copy2(image, new / folder / image.name)
    # The output folder: the projection resolves its current run through current.json.
    document = project_images(spark, result.prepared.layout.root, str(new), str(root / "projected"))
    assert document["counts"] == {"input": 4, "projected": 4, "rejected": 0}
    assert document["run"] == result.layout.root
    run_pca = {Path(r.path).name + r.label: np.array(r.pca_features)
               for r in spark.read.parquet(result.layout.pca).collect()}
    rows = spark.read.parquet(current_run(str(root / "projected")) + "/projected").collect()
    for row in rows:
        expected = run_pca[Path(row.path).name + row.label]
        np.testing.assert_allclose(row.pca_features, expected, rtol=1e-5, atol=1e-5)
        assert row.predicted_label in result.manifest["evaluation"]["labels"]
        assert 0 < row.probability <= 1


def test_projection_refuses_other_weights(spark, evaluated_run):
    root, result = evaluated_run
    with pytest.raises(IncompatibleRunError, match="not those the run used"):
        project_images(spark, _with_seed(result, root), result.prepared.input_path, str(root / "other"))


def _with_seed(result, root):
    """A copy of the run whose manifest claims other random weights (seed 99)."""
    copy = root / "tampered"
    if not copy.exists():
        shutil.copytree(result.layout.root, copy)
        manifest = json.loads((copy / "manifest.json").read_text())
        manifest["parameters"]["seed"] = 99
        (copy / "manifest.json").write_text(json.dumps(manifest))
    return str(copy)



def test_projecting_a_run_in_a_bucket_applies_its_classifier(spark, moto, tmp_path):
    """A run published to s3:// (moto) with a training split: fruits project finds and applies its classifier."""
    import boto3

    boto3.client("s3").create_bucket(Bucket="fruits-projection",
                                     CreateBucketConfiguration={"LocationConstraint": "eu-west-3"})
    classes = CLASSES[:3]
    images = generate_demo_images(tmp_path / "images", per_class=6, seed=31, classes=classes)
    train = generate_demo_training_images(images, per_class=6, seed=31, classes=classes)
    output = "s3://fruits-projection/runs/evaluated"
    result = execute(spark, prepare(RunParams(input_path=str(images), output_dir=output, weights="random", k=4,
                                              train_path=str(train))))
    labels = result.manifest["evaluation"]["labels"]
    assert current_run(output).startswith(f"{output}/runs/") and sorted(labels) == sorted(c.name for c in classes)

    document = project_images(spark, output, str(images), str(tmp_path / "projected"))
    assert document["classifier"] is True and document["counts"]["projected"] == 3 * 6
    rows = spark.read.parquet(current_run(str(tmp_path / "projected")) + "/projected").collect()
    assert len(rows) == 3 * 6
    assert all(row.predicted_label in labels and 0 < row.probability <= 1 for row in rows)

@pytest.mark.slow
def test_real_features_recognise_fruits(spark, real_images, real_weights, tmp_path):
    """A real slice: 8 classes, 20 training and 15 test images each; features must separate them."""
    train = copy_slice(real_images / "Training-sample", tmp_path / "train", classes=8, per_class=20)
    test = copy_slice(real_images / "Test", tmp_path / "test", classes=8, per_class=15)
    params = RunParams(input_path=str(test), output_dir=str(tmp_path / "out"), weights=str(real_weights),
                       k=20, train_path=str(train))
    evaluation = execute(spark, prepare(params)).manifest["evaluation"]
    assert evaluation["classes_scored"] == 8 and evaluation["test_images_scored"] == 120
    assert evaluation["accuracy"] >= 0.9, evaluation["sweep"]


def _labelled_features(spark, tmp_path, *, per_class: dict[str, tuple[int, int]], seed: int = 5):
    """Train and test Parquet sets of 1280-wide features: overlapping classes in a 40-factor subspace.

    ``per_class`` maps a label to its (train, test) image counts. The factors have
    distinct power-law scales (as MobileNetV2's features), so each leading component is
    well defined, and the classes overlap enough that the accuracy moves with k.
    """
    from fruits.featurize.shapes import FEATURE_DIM

    rng = np.random.default_rng(seed)
    factors = 40
    scales = 1.0 / np.arange(1, factors + 1) ** 0.8
    loadings = rng.standard_normal((factors, FEATURE_DIM)) * 0.3
    frames = {"train": [], "test": []}
    for label, counts in per_class.items():
        centre = rng.standard_normal(factors) * scales * 0.7
        for split, count in zip(("train", "test"), counts):
            latent = centre + rng.standard_normal((count, factors)) * scales
            rows = np.maximum(0.4 + latent @ loadings + 0.05 * rng.standard_normal((count, FEATURE_DIM)), 0)
            frames[split] += [(f"/{split}/{label}/{i}.jpg", label, row.astype(np.float32).tolist())
                              for i, row in enumerate(rows)]
    paths = {}
    for split, rows in frames.items():
        paths[split] = str(tmp_path / split)
        spark.createDataFrame(rows, "path string, label string, features array<float>") \
            .repartition(3).write.parquet(paths[split])
    return spark.read.parquet(paths["train"]), spark.read.parquet(paths["test"])


@pytest.mark.slow  # 40-60 s per case on 2 cores: Spark ML's PCA fits (a full 1280 x 1280 SVD in the JVM each)
@pytest.mark.parametrize("test_only_class", [False, True], ids=["run-components", "one-pass-on-scored"])
def test_sweep_scores_equal_those_of_a_spark_ml_pca_fit_per_k(spark, tmp_path, test_only_class):
    """The sweep builds each k from one decomposition; the former way fitted Spark ML PCA per k.

    Without test-only classes the run's own components are used; with one, the scored
    images are a subset of the run's and their components come from one pass. Either
    way: the projections equal Spark ML's ``PCA(k).fit`` on the scored images (1e-6, up
    to sign) and every k's accuracy and macro-F1 equal those of the classifier fitted on
    Spark ML's projections.
    """
    from pyspark.ml.feature import PCA, StringIndexer
    from pyspark.sql import functions as F

    from fruits.analysis.evaluate import LABEL_INDEX, evaluate
    from fruits.analysis.logistic import fit_multinomial
    from fruits.analysis.pca import PCA_VECTOR_COL, VECTOR_COL, fit_pca, pca_model, with_vectors

    classes = {f"c{i}": (40, 30) for i in range(6)}
    if test_only_class:
        classes["only-in-test"] = (0, 30)
    train_df, test_df = _labelled_features(spark, tmp_path, per_class=classes)
    run = fit_pca(test_df, k=3)  # as a run fits its PCA: on all of its images
    k_sweep = (2, 5, 12)
    result = evaluate(train_df, test_df, run.model, spectrum=run.spectrum, components=run.components,
                      k_sweep=k_sweep)
    assert result.metrics["test_images_not_scored"] == (30 if test_only_class else 0)

    common = sorted(f"c{i}" for i in range(6))
    indexer = StringIndexer(inputCol="label", outputCol=LABEL_INDEX, stringOrderType="alphabetAsc") \
        .fit(train_df.where(F.col("label").isin(common)))
    train, test = (with_vectors(indexer.transform(frame.where(F.col("label").isin(common))))
                   for frame in (train_df, test_df))
    ours = {row["k"]: row for row in result.metrics["sweep"]}
    assert sorted(ours) == [2, 3, 5, 12, 1280]
    test_vectors = np.array([row[VECTOR_COL].toArray() for row in test.select(VECTOR_COL).collect()])
    # Spark ML's PCA(k).fit keeps the first k components of one full decomposition of the
    # covariance, so one fit at the largest k holds every smaller k's model (checked here once, on
    # k=2: equal to rounding, not bit for bit, as two fits sum the partitions' Gram matrices in
    # the order their tasks end). Each k's reference is then Spark's own PCAModel and transform.
    largest = PCA(k=max(k_sweep), inputCol=VECTOR_COL, outputCol=PCA_VECTOR_COL).fit(test)
    if not test_only_class:
        direct = PCA(k=2, inputCol=VECTOR_COL, outputCol=PCA_VECTOR_COL).fit(test)
        first_two = largest.pc.toArray()[:, :2]
        signs = np.sign((direct.pc.toArray() * first_two).sum(axis=0))
        np.testing.assert_allclose(direct.pc.toArray(), first_two * signs, rtol=0, atol=1e-10)
        np.testing.assert_allclose(direct.explainedVariance.toArray(), largest.explainedVariance.toArray()[:2],
                                   rtol=1e-10)
    for k in k_sweep:
        reference = pca_model(spark, largest.pc.toArray()[:, :k], largest.explainedVariance.toArray()[:k])
        (x, y), (x_test, y_test) = (_projected(reference.transform(frame)) for frame in (train, test))
        predicted = fit_multinomial(x, y, len(result.labels)).predict(x_test)
        expected = scores(y_test, predicted, result.labels)
        assert (ours[k]["accuracy"], ours[k]["macro_f1"]) == (expected["accuracy"], expected["macro_f1"]), k
        # The components the sweep used for k: those of the run, or of one pass over the scored images.
        used = run.components if not test_only_class else _scored_components(test)
        signs = np.sign((used[:, :k] * reference.pc.toArray()).sum(axis=0))
        np.testing.assert_allclose(test_vectors @ used[:, :k] * signs, test_vectors @ reference.pc.toArray(),
                                   rtol=0, atol=1e-6)
    # The run's own components are not those of the scored subset: using them there would change the scores' basis.
    if test_only_class:
        assert np.abs(np.abs((run.components[:, :12] * _scored_components(test)[:, :12]).sum(axis=0)) - 1).max() > 1e-6


def _projected(frame):
    """A projected frame's PCA vectors and class indices, as arrays."""
    from fruits.analysis.evaluate import LABEL_INDEX
    from fruits.analysis.pca import PCA_VECTOR_COL

    rows = frame.select(PCA_VECTOR_COL, LABEL_INDEX).collect()
    return np.array([row[0].toArray() for row in rows]), np.array([row[1] for row in rows])


def _scored_components(scored):
    from fruits.analysis.pca import decompose

    return decompose(scored)[1]


@pytest.mark.slow  # three Spark ML fits of up to 1280 features: about 30 s
def test_an_evaluation_too_large_for_the_driver_fits_in_spark_ml_and_agrees(spark, tmp_path, monkeypatch):
    """Above DRIVER_FIT_MAX_VALUES Spark ML fits: the same counts, classes and sweep, scores within 2 images."""
    from fruits.analysis import evaluate as evaluation
    from fruits.analysis.pca import fit_pca

    classes = {**{f"c{i}": (20, 15) for i in range(3)}, "only-in-test": (0, 5)}
    train_df, test_df = _labelled_features(spark, tmp_path, per_class=classes)
    run = fit_pca(test_df, k=3)

    def evaluated():
        return evaluation.evaluate(train_df, test_df, run.model, spectrum=run.spectrum,
                                   components=run.components, k_sweep=(5,))

    on_driver = evaluated()
    monkeypatch.setattr(evaluation, "DRIVER_FIT_MAX_VALUES", 0)
    in_spark = evaluated()
    assert in_spark.classifier.hasSummary and not on_driver.classifier.hasSummary, "each path fitted its own"
    assert in_spark.labels == on_driver.labels == ["c0", "c1", "c2"]
    same = ("k", "train_images", "test_images_scored", "classes_scored", "test_only_classes", "test_images_not_scored")
    assert {key: in_spark.metrics[key] for key in same} == {key: on_driver.metrics[key] for key in same} == {
        "k": 3, "train_images": 60, "test_images_scored": 45, "classes_scored": 3,
        "test_only_classes": ["only-in-test"], "test_images_not_scored": 5}
    assert [row["k"] for row in in_spark.metrics["sweep"]] == [row["k"] for row in on_driver.metrics["sweep"]] == [3, 5, 1280]
    for spark_row, driver_row in zip(in_spark.metrics["sweep"], on_driver.metrics["sweep"]):
        assert spark_row["cumulative_variance"] == driver_row["cumulative_variance"]
        assert abs(spark_row["accuracy"] - driver_row["accuracy"]) <= 2 / 45, (spark_row, driver_row)
