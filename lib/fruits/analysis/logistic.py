"""Spark ML's multinomial logistic regression, fitted with NumPy on the driver when the data is small.

Spark ML fits a logistic regression with L-BFGS, one Spark job per iteration. On a
small training set each job is mostly scheduling latency: the demo's seven fits on
120 training images took 28.5 s of its 70 (2026-12-06), the arithmetic a few
milliseconds. Here the same objective is minimised in-process:

* multinomial family, intercepts fitted and never penalised;
* features standardized by their sample standard deviation (``standardization=True``;
  a constant feature gets a zero coefficient), the L2 penalty
  ``regParam / 2 * ||W||^2`` applied to the coefficients in that standardized space;
* the log-loss averaged over the training rows (every weight 1).

Its optimum is unique up to a common shift of the intercepts, which Spark removes by
centring them; so is it here. This L-BFGS stops when the gradient vanishes (relative
1e-9) rather than at Spark's 1e-6 relative change of the loss after at most 200
iterations, so its coefficients are at least as close to the optimum; the predictions
equal Spark ML's wherever Spark's own fit had converged (tests/test_logistic.py
compares both on the same rows). :func:`spark_model` turns the result into Spark ML's
``LogisticRegressionModel``, which saves, loads and transforms like a fitted one.
"""

from __future__ import annotations

import dataclasses

import numpy as np

#: Spark ML's settings the project uses (``fruits.analysis.evaluate``), and this fit's.
REG_PARAM = 1e-3
MAX_ITER = 200
#: This fit's own bound on L-BFGS iterations (each costs one pass over the rows in memory).
DRIVER_MAX_ITER = 2000


@dataclasses.dataclass
class Fitted:
    """Coefficients and intercepts in the features' own units, and how the fit ended."""

    coefficients: np.ndarray  # (classes, features)
    intercepts: np.ndarray  # (classes,)
    iterations: int
    converged: bool

    def margins(self, x: np.ndarray) -> np.ndarray:
        """``x @ W.T + b``: what Spark ML calls rawPrediction."""
        return np.asarray(x, dtype=np.float64) @ self.coefficients.T + self.intercepts

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class index of each row: the largest margin, the first on a tie (as Spark ML)."""
        return np.argmax(self.margins(x), axis=1).astype(np.float64)


def fit_multinomial(x: np.ndarray, y: np.ndarray, num_classes: int, *, reg_param: float = REG_PARAM,
                    max_iter: int = DRIVER_MAX_ITER) -> Fitted:
    """Minimise Spark ML's multinomial objective (see the module) on rows ``x`` and labels ``y``.

    Parameters
    ----------
    x : numpy.ndarray
        ``(rows, features)``.
    y : numpy.ndarray
        Class index of each row, in ``[0, num_classes)``.

    Examples
    --------
    >>> x = np.array([[0.0, 1.0], [0.1, 0.9], [1.0, 0.0], [0.9, 0.2]])
    >>> fit = fit_multinomial(x, np.array([0, 0, 1, 1]), 2)
    >>> fit.predict(x).tolist(), fit.converged, round(float(fit.intercepts.sum()), 12)
    ([0.0, 0.0, 1.0, 1.0], True, 0.0)
    """
    x = np.asarray(x, dtype=np.float64)
    labels = np.asarray(y).astype(np.int64)
    rows, width = x.shape
    if rows < 2 or labels.shape != (rows,):
        raise ValueError(f"need at least 2 rows and one label per row, got x {x.shape} and y {labels.shape}")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}), got {labels.min()}..{labels.max()}")
    std = x.std(axis=0, ddof=1)
    scale = np.divide(1.0, std, out=np.zeros_like(std), where=std > 0)
    scaled = x * scale
    onehot = np.zeros((rows, num_classes))
    onehot[np.arange(rows), labels] = 1.0

    def loss_and_gradient(theta: np.ndarray) -> tuple[float, np.ndarray]:
        weights = theta[:num_classes * width].reshape(num_classes, width)
        bias = theta[num_classes * width:]
        margins = scaled @ weights.T + bias
        top = margins.max(axis=1, keepdims=True)
        exp = np.exp(margins - top)
        total = exp.sum(axis=1, keepdims=True)
        log_likelihood = (margins * onehot).sum() - (top + np.log(total)).sum()
        residual = (exp / total - onehot) / rows
        loss = -log_likelihood / rows + 0.5 * reg_param * float((weights * weights).sum())
        gradient = np.concatenate([(residual.T @ scaled + reg_param * weights).ravel(), residual.sum(axis=0)])
        return loss, gradient

    # Start where Spark does: zero coefficients, intercepts at the centred log class frequencies.
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    start_bias = np.log(np.maximum(counts, 0.5) / rows)
    theta0 = np.concatenate([np.zeros(num_classes * width), start_bias - start_bias.mean()])
    theta, iterations, converged = _lbfgs(loss_and_gradient, theta0, max_iter=max_iter)
    weights = theta[:num_classes * width].reshape(num_classes, width)
    bias = theta[num_classes * width:]
    return Fitted(coefficients=weights * scale, intercepts=bias - bias.mean(),
                  iterations=iterations, converged=converged)


def _lbfgs(function, theta: np.ndarray, *, max_iter: int, memory: int = 10,
           gradient_tol: float = 1e-9) -> tuple[np.ndarray, int, bool]:
    """Limited-memory BFGS with a backtracking (Armijo) line search, for a smooth convex function.

    Stops when the gradient's norm falls below ``gradient_tol`` times its first norm (or
    1), when no step lowers the function any more (the optimum within rounding), or
    after ``max_iter`` iterations. Returns the point, the iterations and whether it
    converged.
    """
    loss, gradient = function(theta)
    stop = gradient_tol * max(1.0, float(np.linalg.norm(gradient)))
    steps: list[tuple[np.ndarray, np.ndarray, float]] = []
    for iteration in range(1, max_iter + 1):
        if np.linalg.norm(gradient) <= stop:
            return theta, iteration - 1, True
        direction = _two_loop(gradient, steps)
        slope = float(gradient @ direction)
        if slope >= 0:  # not a descent direction (rounding): restart from steepest descent
            steps.clear()
            direction, slope = -gradient, -float(gradient @ gradient)
        step = 1.0 if steps else min(1.0, 1.0 / max(1e-12, float(np.linalg.norm(gradient))))
        for _ in range(60):
            candidate = theta + step * direction
            new_loss, new_gradient = function(candidate)
            if new_loss <= loss + 1e-4 * step * slope:
                break
            step *= 0.5
        else:  # no step lowers the loss: as close to the optimum as float64 allows
            return theta, iteration - 1, True
        s, y = candidate - theta, new_gradient - gradient
        curvature = float(s @ y)
        if curvature > 1e-12 * float(np.linalg.norm(s)) * float(np.linalg.norm(y)):
            steps.append((s, y, 1.0 / curvature))
            if len(steps) > memory:
                steps.pop(0)
        unchanged = loss - new_loss <= 1e-15 * max(1.0, abs(loss))
        theta, loss, gradient = candidate, new_loss, new_gradient
        if unchanged:
            return theta, iteration, True
    return theta, max_iter, bool(np.linalg.norm(gradient) <= stop)


def _two_loop(gradient: np.ndarray, steps: list) -> np.ndarray:
    """L-BFGS's two-loop recursion: minus the inverse-Hessian estimate times the gradient."""
    q = gradient.copy()
    alphas = []
    for s, y, rho in reversed(steps):
        alpha = rho * float(s @ q)
        q -= alpha * y
        alphas.append(alpha)
    if steps:
        s, y, _ = steps[-1]
        q *= float(s @ y) / float(y @ y)
    for (s, y, rho), alpha in zip(steps, reversed(alphas)):
        q += (alpha - rho * float(y @ q)) * s
    return -q


def spark_model(spark, fitted: Fitted, *, features_col: str, label_col: str, reg_param: float = REG_PARAM):
    """Spark ML's ``LogisticRegressionModel`` holding ``fitted``'s coefficients, as if ``fit`` had found them.

    Its params are those of the estimator the project configures (multinomial,
    ``regParam``, standardization); it transforms, saves and loads like a fitted model
    (it has no training summary).
    """
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.common import _py2java
    from pyspark.ml.linalg import DenseMatrix, DenseVector
    from pyspark.ml.wrapper import JavaParams

    classes, width = fitted.coefficients.shape
    context = spark.sparkContext
    matrix = _py2java(context, DenseMatrix(classes, width, fitted.coefficients.flatten(order="F").tolist()))
    vector = _py2java(context, DenseVector(fitted.intercepts.tolist()))
    uid = LogisticRegression().uid  # the uid a fit would give: that of the estimator
    java_model = context._jvm.org.apache.spark.ml.classification.LogisticRegressionModel(
        uid, matrix, vector, classes, True)
    model = JavaParams._from_java(java_model)
    model._set(featuresCol=features_col, labelCol=label_col, family="multinomial", maxIter=MAX_ITER,
               regParam=reg_param, standardization=True)
    model._transfer_params_to_java()
    return model
