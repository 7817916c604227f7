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
centring them; so is it here. With fewer rows than features the fit runs in an
orthonormal basis of the rows' span (the optimum lies there), so a problem's size is
classes x min(rows, features). Up to :data:`NEWTON_MAX_PARAMETERS` it takes Newton steps
with the exact Hessian and reaches the optimum to rounding in a few dozen steps (on
separable classes the intercepts' curvature nearly vanishes and L-BFGS crawls: 2,000
iterations short of it on the demo); above, L-BFGS. Spark stops at a 1e-6 relative change
of the loss after at most 200 iterations, so where it had not reached the optimum a
prediction may differ (the demo: one image of 180 at some k); tests/test_logistic.py
checks that the objective is Spark's and that Spark run to convergence lands on the
same coefficients and predictions. :func:`spark_model` turns the result into Spark ML's
``LogisticRegressionModel``, which saves, loads and transforms like a fitted one.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from fruits.analysis.blas import one_blas_thread

#: Spark ML's settings the project uses (``fruits.analysis.evaluate``), and this fit's.
REG_PARAM = 1e-3
MAX_ITER = 200
#: This fit's own bound on L-BFGS iterations (each costs one pass over the rows in memory).
DRIVER_MAX_ITER = 2000
#: Up to this many parameters (classes x (features or rows, whichever is fewer, + 1)) the fit
#: takes Newton steps with the exact Hessian (at most 2,000^2 float64: 32 MB, a solve well
#: under a second); above it L-BFGS.
NEWTON_MAX_PARAMETERS = 2000


def newton_applies(rows: int, features: int, classes: int) -> bool:
    """Whether a fit of ``rows`` x ``features`` in ``classes`` takes Newton steps (see :data:`NEWTON_MAX_PARAMETERS`).

    >>> newton_applies(120, 1280, 6), newton_applies(4000, 1280, 131)
    (True, False)
    """
    return classes * (min(rows, features) + 1) - 1 <= NEWTON_MAX_PARAMETERS


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
    with one_blas_thread():  # hundreds of small products and solves: they stall on busy cores (fruits.analysis.blas)
        return _fit(x, y, num_classes, reg_param=reg_param, max_iter=max_iter)


def _fit(x, y, num_classes: int, *, reg_param: float, max_iter: int) -> Fitted:
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
    # The penalised optimum's coefficients lie in the span of the rows (the penalty is plain
    # L2 in this space): with fewer rows than features, fit in an orthonormal basis of that
    # span, an equivalent problem with one coefficient per row instead of per feature.
    basis = None
    if rows < width:
        _, singular, vt = np.linalg.svd(scaled, full_matrices=False)
        basis = vt[singular > singular[0] * 1e-12]
        scaled = scaled @ basis.T
    onehot = np.zeros((rows, num_classes))
    onehot[np.arange(rows), labels] = 1.0
    problem = _Problem(scaled, onehot, reg_param)
    # Start where Spark does: zero coefficients, intercepts at the centred log class frequencies.
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    start_bias = np.log(np.maximum(counts, 0.5) / rows)
    theta0 = np.concatenate([np.zeros(num_classes * scaled.shape[1]), start_bias - start_bias[-1]])[:-1]
    if newton_applies(rows, scaled.shape[1], num_classes):
        theta, iterations, converged = _newton(problem, theta0, max_iter=100)
    else:
        theta, iterations, converged = _lbfgs(problem.loss_and_gradient, theta0, max_iter=max_iter)
    weights, bias = problem.unpack(theta)
    if basis is not None:
        weights = weights @ basis
    return Fitted(coefficients=weights * scale, intercepts=bias - bias.mean(),
                  iterations=iterations, converged=converged)


class _Problem:
    """The objective on standardized (or span-reduced) rows; the last class's intercept is held at 0.

    The loss does not change when every intercept moves by the same amount: holding one
    at 0 removes that flat direction (the intercepts are centred afterwards, as Spark does).
    """

    def __init__(self, rows: np.ndarray, onehot: np.ndarray, reg_param: float):
        self.rows, self.onehot, self.reg_param = rows, onehot, reg_param
        self.count, self.width = rows.shape
        self.classes = onehot.shape[1]

    def unpack(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        weights = theta[:self.classes * self.width].reshape(self.classes, self.width)
        return weights, np.append(theta[self.classes * self.width:], 0.0)

    def probabilities(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        weights, bias = self.unpack(theta)
        margins = self.rows @ weights.T + bias
        margins -= margins.max(axis=1, keepdims=True)
        exp = np.exp(margins)
        total = exp.sum(axis=1, keepdims=True)
        return exp / total, margins - np.log(total)

    def loss_and_gradient(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        weights, _ = self.unpack(theta)
        probability, log_probability = self.probabilities(theta)
        residual = (probability - self.onehot) / self.count
        loss = -float((log_probability * self.onehot).sum()) / self.count \
            + 0.5 * self.reg_param * float((weights * weights).sum())
        gradient = np.concatenate([(residual.T @ self.rows + self.reg_param * weights).ravel(),
                                   residual.sum(axis=0)[:-1]])
        return loss, gradient

    def hessian(self, theta: np.ndarray) -> np.ndarray:
        """Exact second derivatives: block (j, l) is ``A.T diag(p_j (d_jl - p_l)) A / n``, A = [rows, 1]."""
        probability, _ = self.probabilities(theta)
        design = np.hstack([self.rows, np.ones((self.count, 1))])
        size = self.width + 1
        full = np.zeros((self.classes * size, self.classes * size))
        for j in range(self.classes):
            for l in range(j, self.classes):
                weight = probability[:, j] * ((j == l) - probability[:, l]) / self.count
                block = design.T @ (design * weight[:, None])
                full[j * size:(j + 1) * size, l * size:(l + 1) * size] = block
                full[l * size:(l + 1) * size, j * size:(j + 1) * size] = block.T
        full[np.arange(full.shape[0]), np.arange(full.shape[0])] += np.tile(
            np.append(np.full(self.width, self.reg_param), 0.0), self.classes)
        # Reorder to theta's layout (every class's weights, then the intercepts) and drop the held one.
        order = np.concatenate([np.arange(self.classes * size).reshape(self.classes, size)[:, :-1].ravel(),
                                (np.arange(self.classes) * size + self.width)[:-1]])
        return full[np.ix_(order, order)]


def _newton(problem: _Problem, theta: np.ndarray, *, max_iter: int) -> tuple[np.ndarray, int, bool]:
    """Newton's method with a backtracking line search: the optimum to rounding in a few dozen steps.

    For problems small enough to hold the Hessian: on separable classes the intercepts'
    curvature nearly vanishes (eigenvalues 1e-6 against 84 on the demo), where L-BFGS
    crawls for thousands of iterations.
    """
    loss, gradient = problem.loss_and_gradient(theta)
    stop = 1e-10 * max(1.0, float(np.abs(gradient).max()))
    for iteration in range(1, max_iter + 1):
        if float(np.abs(gradient).max()) <= stop:
            return theta, iteration - 1, True
        try:
            direction = -np.linalg.solve(problem.hessian(theta), gradient)
        except np.linalg.LinAlgError:
            direction = -gradient
        if float(gradient @ direction) >= 0:  # not a descent direction (rounding): steepest descent
            direction = -gradient
        accepted = _backtrack(problem.loss_and_gradient, theta, loss, gradient, direction, step=1.0)
        if accepted is None:  # no step lowers the loss: the optimum within rounding
            return theta, iteration - 1, True
        theta, loss, gradient = accepted
    return theta, max_iter, bool(np.abs(gradient).max() <= stop)


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
        if float(gradient @ direction) >= 0:  # not a descent direction (rounding): restart from steepest descent
            steps.clear()
            direction = -gradient
        step = 1.0 if steps else min(1.0, 1.0 / max(1e-12, float(np.linalg.norm(gradient))))
        accepted = _backtrack(function, theta, loss, gradient, direction, step=step)
        if accepted is None:  # no step lowers the loss: as close to the optimum as float64 allows
            return theta, iteration - 1, True
        candidate, new_loss, new_gradient = accepted
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


def _backtrack(function, theta: np.ndarray, loss: float, gradient: np.ndarray, direction: np.ndarray, *,
               step: float, halvings: int = 60) -> tuple[np.ndarray, float, np.ndarray] | None:
    """Armijo's backtracking line search shared by both methods: the first ``step`` (halved
    up to ``halvings`` times) that lowers the loss by 1e-4 of the slope's promise; its point,
    loss and gradient, or ``None`` when none does."""
    slope = float(gradient @ direction)
    for _ in range(halvings):
        candidate = theta + step * direction
        new_loss, new_gradient = function(candidate)
        if new_loss <= loss + 1e-4 * step * slope:
            return candidate, new_loss, new_gradient
        step *= 0.5
    return None


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
