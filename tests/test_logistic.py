"""The driver's logistic regression minimises Spark ML's objective, and becomes a Spark ML model."""

import numpy as np
import pytest

from fruits.analysis.logistic import REG_PARAM, fit_multinomial, spark_model


def spark_objective(x, y, coefficients, intercepts, reg_param=REG_PARAM):
    """Spark ML's multinomial objective, written from its documentation, in the features' own units.

    Mean log-loss plus ``reg_param / 2`` times the squared coefficients scaled by each
    feature's sample standard deviation (``standardization=True``); intercepts free.
    """
    margins = x @ coefficients.T + intercepts
    top = margins.max(axis=1, keepdims=True)
    log_sum = top[:, 0] + np.log(np.exp(margins - top).sum(axis=1))
    loss = (log_sum - margins[np.arange(len(y)), y.astype(int)]).mean()
    return loss + 0.5 * reg_param * float(((coefficients * x.std(axis=0, ddof=1)) ** 2).sum())


def test_separable_rows_are_told_apart_and_the_intercepts_are_centred():
    x = np.array([[0.0, 1.0, 3.0], [0.1, 0.9, 3.0], [1.0, 0.0, 3.0], [0.9, 0.2, 3.0], [0.5, 0.5, 3.0], [0.4, 0.6, 3.0]])
    y = np.array([0, 0, 1, 1, 2, 2])
    fit = fit_multinomial(x, y, 3)
    assert fit.converged
    assert fit.predict(x).tolist() == y.tolist()
    assert abs(fit.intercepts.sum()) < 1e-12
    assert np.all(fit.coefficients[:, 2] == 0), "a constant feature gets no weight, as in Spark ML"
    np.testing.assert_allclose(fit.coefficients.sum(axis=0), 0, atol=1e-8)  # the L2 optimum is centred


def test_lbfgs_for_many_parameters_reaches_the_newton_optimum(monkeypatch):
    """Above NEWTON_MAX_PARAMETERS the fit takes L-BFGS steps: same optimum on an overlapping problem."""
    from fruits.analysis import logistic

    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 300)
    x = rng.standard_normal((300, 5)) * [1, 2, 0.5, 3, 1] + np.eye(3, 5)[y] * 1.5
    newton = fit_multinomial(x, y, 3)
    monkeypatch.setattr(logistic, "NEWTON_MAX_PARAMETERS", 0)
    lbfgs = fit_multinomial(x, y, 3)
    assert newton.converged and lbfgs.converged and newton.iterations < lbfgs.iterations
    assert spark_objective(x, y, lbfgs.coefficients, lbfgs.intercepts) == pytest.approx(
        spark_objective(x, y, newton.coefficients, newton.intercepts), rel=1e-10)
    np.testing.assert_allclose(lbfgs.coefficients, newton.coefficients, rtol=0, atol=1e-5)


def test_bad_input_is_refused_by_name():
    with pytest.raises(ValueError, match="labels must lie in"):
        fit_multinomial(np.ones((3, 2)), np.array([0, 1, 2]), 2)
    with pytest.raises(ValueError, match="at least 2 rows"):
        fit_multinomial(np.ones((1, 2)), np.array([0]), 2)


@pytest.fixture(scope="module")
def labelled(spark, tmp_path_factory):
    """Six overlapping classes of 1280-wide features (those of the sweep's test), as rows and as Spark frames."""
    from pyspark.ml.feature import StringIndexer

    from fruits.analysis.pca import with_vectors
    from tests.test_evaluate import _labelled_features

    train_df, test_df = _labelled_features(spark, tmp_path_factory.mktemp("labelled"),
                                           per_class={f"c{i}": (40, 30) for i in range(6)})
    indexer = StringIndexer(inputCol="label", outputCol="label_index", stringOrderType="alphabetAsc").fit(train_df)
    frames = [with_vectors(indexer.transform(frame)).cache() for frame in (train_df, test_df)]
    arrays = []
    for frame in frames:
        rows = frame.select("features", "label_index").collect()
        arrays += [np.array([row.features for row in rows], dtype=np.float64), np.array([row.label_index for row in rows])]
    return frames, arrays


@pytest.mark.slow  # two Spark ML fits of 1280 features, one run to convergence: about 30 s
def test_the_driver_fit_reaches_spark_mls_optimum(spark, labelled):
    from pyspark.ml.classification import LogisticRegression

    (train, test), (x, y, x_test, _) = labelled
    ours = fit_multinomial(x, y, 6)
    assert ours.converged

    def spark_fit(**settings):
        return LogisticRegression(featuresCol="features_vector", labelCol="label_index", family="multinomial",
                                  regParam=REG_PARAM, standardization=True, **settings).fit(train)

    project = spark_fit(maxIter=200)  # the settings evaluation used with Spark ML
    coefficients, intercepts = project.coefficientMatrix.toArray(), project.interceptVector.toArray()
    # The same objective: ours, evaluated at Spark's coefficients, is the value Spark reports.
    assert spark_objective(x, y, coefficients, intercepts) == pytest.approx(project.summary.objectiveHistory[-1], rel=1e-10)
    # Spark stops at a 1e-6 relative change of the loss; the driver's fit goes at least as low.
    assert spark_objective(x, y, ours.coefficients, ours.intercepts) <= project.summary.objectiveHistory[-1]

    converged = spark_fit(maxIter=3000, tol=1e-12)
    reference = converged.coefficientMatrix.toArray()
    # Newton's steps reach the optimum to rounding: no higher than Spark run to convergence.
    assert spark_objective(x, y, ours.coefficients, ours.intercepts) == pytest.approx(
        converged.summary.objectiveHistory[-1], rel=1e-9)
    assert spark_objective(x, y, ours.coefficients, ours.intercepts) <= converged.summary.objectiveHistory[-1] + 1e-15
    assert np.abs(ours.coefficients - reference).max() <= 1e-3 * np.abs(reference).max()
    predicted = np.array([row.prediction for row in converged.transform(test).select("prediction").collect()])
    assert ours.predict(x_test).tolist() == predicted.tolist()


def test_the_fit_becomes_a_spark_ml_model_that_predicts_saves_and_loads(spark, labelled, tmp_path):
    from pyspark.ml.classification import LogisticRegressionModel

    (_, test), (x, y, x_test, _) = labelled
    fit = fit_multinomial(x, y, 6)
    model = spark_model(spark, fit, features_col="features_vector", label_col="label_index")
    model.write().save(str(tmp_path / "classifier"))
    loaded = LogisticRegressionModel.load(str(tmp_path / "classifier"))
    assert (loaded.numClasses, loaded.getFamily(), loaded.getRegParam()) == (6, "multinomial", REG_PARAM)
    rows = loaded.transform(test).select("prediction", "rawPrediction").collect()
    assert [row.prediction for row in rows] == fit.predict(x_test).tolist()
    np.testing.assert_allclose([row.rawPrediction.toArray() for row in rows], fit.margins(x_test), rtol=1e-9, atol=1e-9)
