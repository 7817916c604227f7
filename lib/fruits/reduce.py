"""PCA of the features with Spark ML: a fixed k, or the smallest k reaching a variance target.

The explained variance of every component (the spectrum) is computed first from
the covariance matrix, accumulated per partition with NumPy and decomposed on the
driver: one cheap pass, where a second Spark ML fit at full width would cost a
second JVM decomposition of a 1280x1280 matrix. The spectrum drives the report's
curve and the choice of k by a variance target; Spark ML then fits the model that
is saved and applied, once, with k components.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from fruits.params import FEATURE_DIM

VECTOR_COL = "features_vector"
PCA_VECTOR_COL = "pca_vector"


@dataclasses.dataclass
class PcaResult:
    """A fitted PCA and what it explains.

    Attributes
    ----------
    model : pyspark.ml.feature.PCAModel
        Fitted with ``k`` components.
    k : int
        Components kept.
    spectrum : list of float
        Explained-variance ratio of every component, decreasing (up to 1280).
    """

    model: object
    k: int
    spectrum: list[float]

    @property
    def explained_variance(self) -> list[float]:
        """Explained-variance ratio of each of the ``k`` kept components."""
        return self.spectrum[: self.k]

    @property
    def cumulative_variance(self) -> list[float]:
        """Cumulative explained variance for 1..k components."""
        return np.cumsum(self.explained_variance).tolist()


def smallest_k_for(spectrum: list[float], target: float) -> int:
    """Smallest number of leading components whose variance ratios sum to ``target``.

    Examples
    --------
    >>> smallest_k_for([0.5, 0.3, 0.2], 0.8)
    2
    """
    cumulative = np.cumsum(spectrum)
    reached = np.nonzero(cumulative >= target - 1e-12)[0]
    return int(reached[0]) + 1 if len(reached) else len(spectrum)


def with_vectors(features_df):
    """Add the ML vector column PCA needs, from the ``features`` array column."""
    from pyspark.ml.functions import array_to_vector

    return features_df.withColumn(VECTOR_COL, array_to_vector("features"))


def variance_spectrum(features_df) -> list[float]:
    """Explained-variance ratio of every principal component of ``features``, decreasing.

    Each partition sends back its row count, column sums and ``X.T @ X``
    (1280 x 1280 float64); the driver forms the covariance and its eigenvalues.
    The ratios equal Spark ML PCA's ``explainedVariance`` for the same data.
    """
    import pyarrow as pa

    def partial_sums(batches):
        count, total, gram = 0, np.zeros(FEATURE_DIM), np.zeros((FEATURE_DIM, FEATURE_DIM))
        for batch in batches:
            column = batch.column(0)
            if len(column) == 0:
                continue
            rows = column.flatten().to_numpy(zero_copy_only=False).astype(np.float64)
            rows = rows.reshape(len(column), FEATURE_DIM)
            count += len(rows)
            total += rows.sum(axis=0)
            gram += rows.T @ rows
        yield pa.RecordBatch.from_pydict(
            {"count": [count], "total": [total.tobytes()], "gram": [gram.tobytes()]}
        )

    parts = (
        features_df.select("features")
        .mapInArrow(partial_sums, "count long, total binary, gram binary")
        .collect()
    )
    count = sum(part["count"] for part in parts)
    if count < 2:
        raise ValueError(f"PCA needs at least 2 featurized images, got {count}")
    total = sum(np.frombuffer(part["total"]) for part in parts)
    gram = sum(np.frombuffer(part["gram"]).reshape(FEATURE_DIM, FEATURE_DIM) for part in parts)
    mean = total / count
    covariance = (gram - count * np.outer(mean, mean)) / (count - 1)
    eigenvalues = np.clip(np.linalg.eigvalsh(covariance)[::-1], 0, None)
    return (eigenvalues / eigenvalues.sum()).tolist()


def fit_pca(features_df, *, k: int, variance_target: float | None = None) -> PcaResult:
    """Fit PCA on ``features_df.features`` (array<float> of 1280).

    Parameters
    ----------
    features_df : pyspark.sql.DataFrame
        Holds a ``features`` column; read it from Parquet (it is scanned twice).
    k : int
        Components to keep when ``variance_target`` is ``None``.
    variance_target : float or None
        If set, keep the smallest k whose cumulative explained variance reaches it.

    Returns
    -------
    PcaResult
    """
    from pyspark.ml.feature import PCA

    spectrum = variance_spectrum(features_df)
    chosen = smallest_k_for(spectrum, variance_target) if variance_target is not None else k
    model = PCA(k=chosen, inputCol=VECTOR_COL, outputCol=PCA_VECTOR_COL).fit(with_vectors(features_df))
    return PcaResult(model=model, k=chosen, spectrum=spectrum)


def project(model, features_df):
    """Apply a fitted PCA: ``path``, ``label``, ``pca_features`` (array<float> of k)."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    projected = model.transform(with_vectors(features_df))
    return projected.select(
        "path", "label", vector_to_array(F.col(PCA_VECTOR_COL), dtype="float32").alias("pca_features")
    )
