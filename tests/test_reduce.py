import numpy as np
import pytest
from pyspark.ml.feature import PCAModel

from fruits.params import FEATURE_DIM
from fruits.reduce import fit_pca, project, smallest_k_for


def test_smallest_k_for_a_variance_target():
    assert smallest_k_for([0.5, 0.3, 0.2], 0.5) == 1
    assert smallest_k_for([0.5, 0.3, 0.2], 0.81) == 3
    assert smallest_k_for([0.5, 0.3, 0.2], 1.0) == 3


@pytest.fixture(scope="module")
def features_df(spark):
    rng = np.random.default_rng(0)
    scales = np.linspace(5, 0.01, FEATURE_DIM)
    rows = (rng.standard_normal((120, FEATURE_DIM)) * scales).astype(np.float32)
    return spark.createDataFrame(
        [(f"p{i}", f"c{i % 3}", row.tolist()) for i, row in enumerate(rows)],
        "path string, label string, features array<float>",
    )


def test_fixed_k_and_spectrum_agree_with_spark_ml(features_df):
    result = fit_pca(features_df, k=10)
    assert result.k == 10 and len(result.spectrum) == FEATURE_DIM
    spark_ratios = result.model.explainedVariance.toArray()
    np.testing.assert_allclose(result.explained_variance, spark_ratios, rtol=1e-6, atol=1e-9)
    assert abs(sum(result.spectrum) - 1) < 1e-9
    assert result.cumulative_variance == pytest.approx(np.cumsum(spark_ratios).tolist())


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
    assert PCAModel.load(str(tmp_path / "model")).getK() == 5
