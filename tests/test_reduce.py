import numpy as np
import pytest
from pyspark.ml.feature import PCA, PCAModel

from fruits.featurize.shapes import FEATURE_DIM
from fruits.analysis.pca import (VECTOR_COL, feature_moments, fit_pca, pca_model, principal_components, project,
                           smallest_k_for, with_vectors)


def test_smallest_k_for_a_variance_target():
    assert smallest_k_for([0.5, 0.3, 0.2], 0.5) == 1
    assert smallest_k_for([0.5, 0.3, 0.2], 0.81) == 3
    assert smallest_k_for([0.5, 0.3, 0.2], 1.0) == 3


def realistic_features(count: int, seed: int = 0) -> np.ndarray:
    """Non-negative, correlated rows with a decaying spectrum, like pooled ReLU6 features.

    A few dozen latent factors with power-law scales drive all 1280 columns (as
    MobileNetV2's features of fruit photos, where 50 components keep about 75 % of
    the variance), plus small independent noise; a ReLU keeps them non-negative.
    """
    rng = np.random.default_rng(seed)
    factors = 60
    scales = 1.0 / np.arange(1, factors + 1) ** 0.8
    loadings = rng.standard_normal((factors, FEATURE_DIM)) * 0.3
    latent = rng.standard_normal((count, factors)) * scales
    rows = 0.4 + latent @ loadings + 0.05 * rng.standard_normal((count, FEATURE_DIM))
    return np.maximum(rows, 0).astype(np.float32)


@pytest.fixture(scope="module")
def features_df(spark):
    rows = realistic_features(400)
    return spark.createDataFrame(
        [(f"p{i}", f"c{i % 3}", row.tolist()) for i, row in enumerate(rows)],
        "path string, label string, features array<float>",
    ).repartition(3)


def test_components_and_variance_equal_spark_ml_up_to_sign(features_df):
    result = fit_pca(features_df, k=20)
    reference = PCA(k=20, inputCol=VECTOR_COL, outputCol="out").fit(with_vectors(features_df))
    ours, theirs = result.model.pc.toArray(), reference.pc.toArray()
    assert ours.shape == theirs.shape == (FEATURE_DIM, 20)
    signs = np.sign((ours * theirs).sum(axis=0))
    np.testing.assert_allclose(ours, theirs * signs, rtol=0, atol=1e-6)
    np.testing.assert_allclose(result.model.explainedVariance.toArray(), reference.explainedVariance.toArray(),
                               rtol=0, atol=1e-6)
    np.testing.assert_allclose(result.explained_variance, reference.explainedVariance.toArray(), rtol=1e-6, atol=1e-12)
    assert result.k == 20 and len(result.spectrum) == FEATURE_DIM
    assert abs(sum(result.spectrum) - 1) < 1e-9
    assert result.cumulative_variance == pytest.approx(np.cumsum(reference.explainedVariance.toArray()).tolist())


def test_projection_means_what_spark_ml_projection_means(features_df):
    """Not centred, as Spark ML's transform: the same coordinates, up to each component's sign."""
    result = fit_pca(features_df, k=5)
    reference = PCA(k=5, inputCol=VECTOR_COL, outputCol="pca_vector").fit(with_vectors(features_df))
    signs = np.sign((result.model.pc.toArray() * reference.pc.toArray()).sum(axis=0))
    ours = {row.path: np.asarray(row.pca_features) for row in project(result.model, features_df).collect()}
    theirs = {row.path: np.asarray(row.pca_features) for row in project(reference, features_df).collect()}
    assert ours.keys() == theirs.keys()
    for path, vector in ours.items():
        np.testing.assert_allclose(vector, theirs[path] * signs, rtol=1e-5, atol=1e-4)


def test_projection_equals_spark_ml_transform(features_df):
    """NumPy on the executors gives the numbers of Spark ML's own transform (float64, then float32)."""
    from pyspark.ml.functions import vector_to_array

    model = fit_pca(features_df, k=7).model
    projected = project(model, features_df)
    assert projected.schema.simpleString() == "struct<path:string,label:string,pca_features:array<float>>"
    ours = {row.path: np.asarray(row.pca_features) for row in projected.collect()}
    spark_ml = model.transform(with_vectors(features_df)).select("path", vector_to_array("pca_vector", "float32").alias("v"))
    theirs = {row.path: np.asarray(row.v) for row in spark_ml.collect()}
    assert ours.keys() == theirs.keys() and len(ours) == 400
    for path, vector in ours.items():
        assert vector.shape == (7,)
        np.testing.assert_allclose(vector, theirs[path], rtol=1e-6, atol=1e-6)


def test_projection_refuses_rows_of_another_width(spark, features_df):
    model = fit_pca(features_df, k=3).model
    short = spark.createDataFrame([("p", "c", [1.0, 2.0])], "path string, label string, features array<float>")
    with pytest.raises(Exception, match="takes 1280 features per row, got 2 values for 1 rows"):
        project(model, short).collect()


def test_moments_are_the_sample_mean_and_covariance(features_df):
    rows = np.asarray([row.features for row in features_df.collect()], dtype=np.float64)
    moments = feature_moments(features_df)
    assert moments.count == len(rows)
    np.testing.assert_allclose(moments.mean, rows.mean(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(moments.covariance, np.cov(rows, rowvar=False), rtol=1e-9, atol=1e-12)


def test_components_have_a_fixed_orientation():
    values, vectors = principal_components(np.array([[2.0, 1.0], [1.0, 2.0]]))
    assert values.tolist() == pytest.approx([3.0, 1.0])
    assert all(vectors[np.abs(vectors[:, j]).argmax(), j] > 0 for j in range(2))


def test_variance_target_picks_the_smallest_k(features_df):
    result = fit_pca(features_df, k=50, variance_target=0.6)
    assert result.cumulative_variance[-1] >= 0.6
    assert sum(result.spectrum[: result.k - 1]) < 0.6
    assert result.model.getK() == result.k


def test_projection_is_float_arrays_of_k_and_model_reloads(features_df, tmp_path):
    result = fit_pca(features_df, k=5)
    projected = project(result.model, features_df)
    assert projected.schema.simpleString() == "struct<path:string,label:string,pca_features:array<float>>"
    assert {len(row.pca_features) for row in projected.collect()} == {5}
    result.model.write().overwrite().save(str(tmp_path / "model"))
    reloaded = PCAModel.load(str(tmp_path / "model"))
    assert reloaded.getK() == 5
    assert (reloaded.getInputCol(), reloaded.getOutputCol()) == (result.model.getInputCol(), result.model.getOutputCol())
    np.testing.assert_array_equal(reloaded.pc.toArray(), result.model.pc.toArray())
    np.testing.assert_array_equal(reloaded.explainedVariance.toArray(), result.model.explainedVariance.toArray())
    again = {row.path: row.pca_features for row in project(reloaded, features_df).collect()}
    assert again == {row.path: row.pca_features for row in projected.collect()}


def test_pca_model_refuses_mismatched_shapes(spark):
    with pytest.raises(ValueError, match="^explained_variance must hold one ratio per component"):
        pca_model(spark, np.eye(4)[:, :2], [0.5])
    with pytest.raises(ValueError, match="^k must equal the number of components"):
        pca_model(spark, np.eye(4)[:, :2], [0.5, 0.3], k=3)


def test_too_few_rows_or_no_variance_is_refused(spark):
    one = spark.createDataFrame([("a", "x", [1.0] * FEATURE_DIM)], "path string, label string, features array<float>")
    with pytest.raises(ValueError, match="^PCA needs at least 2 featurized images, got 1"):
        fit_pca(one, k=2)
    same = one.union(one)
    with pytest.raises(ValueError, match="^PCA needs features that vary"):
        fit_pca(same, k=2)


def test_a_model_for_another_k_needs_no_second_fit(features_df):
    """The fit keeps every component: k=7 from a k=3 fit equals Spark ML's PCA(7), up to sign."""
    from fruits.analysis.pca import PcaResult

    result = fit_pca(features_df, k=3)
    assert result.components.shape == (FEATURE_DIM, FEATURE_DIM)
    model = result.model_for(features_df.sparkSession, 7)
    reference = PCA(k=7, inputCol=VECTOR_COL, outputCol="out").fit(with_vectors(features_df))
    ours, theirs = model.pc.toArray(), reference.pc.toArray()
    np.testing.assert_allclose(ours, theirs * np.sign((ours * theirs).sum(axis=0)), rtol=0, atol=1e-6)
    assert model.getK() == 7 and model.explainedVariance.toArray() == pytest.approx(result.spectrum[:7])
    with pytest.raises(ValueError, match="between 1 and 1280, got 0"):
        result.model_for(features_df.sparkSession, 0)
    reloaded = PcaResult(model=result.model, k=3, spectrum=result.spectrum)
    with pytest.raises(ValueError, match="holds no components"):
        reloaded.model_for(features_df.sparkSession, 7)
