"""PCA of the features in one pass: moments on the executors, eigendecomposition on the driver.

Spark ML's ``PCA.fit`` would read the features again, turn every row into a JVM
vector and decompose the 1280x1280 covariance in the JVM; measured on the full
Test split that second pass cost as much as everything else in the stage. Here
each partition sends back its row count, column sums and ``X.T @ X`` (float64);
the driver forms the covariance, decomposes it with NumPy's ``eigh`` (well under a
second) and builds a Spark ML ``PCAModel`` from the leading eigenvectors. That
model is an ordinary one: it is saved, reloaded with ``PCAModel.load`` and applied
exactly as a fitted one.

As in Spark ML, the data are centred to compute the covariance but *not* when
projecting: ``transform`` returns ``pc.T @ x``. Eigenvectors are defined up to
sign; each component is oriented so that its largest-magnitude entry is positive,
so the same features always give the same projection.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from fruits.analysis.blas import one_blas_thread
from fruits.featurize.shapes import FEATURE_DIM

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
    components : numpy.ndarray or None
        Every principal component of the fit (``d x d``, one per column, in the order of
        ``spectrum``), so that a model for another k needs no second pass
        (:meth:`model_for`); ``None`` for a model reloaded from a previous run.
    """

    model: object
    k: int
    spectrum: list[float]
    components: np.ndarray | None = None

    def model_for(self, spark, k: int):
        """A ``PCAModel`` keeping the first ``k`` components of this fit, built without reading any data.

        Raises
        ------
        ValueError
            No components are held (a reloaded model), or ``k`` is out of range.
        """
        if self.components is None:
            raise ValueError("this PCA holds no components (a model reloaded from a previous run); "
                             "fit it again to build a model for another k")
        if not 1 <= k <= self.components.shape[1]:
            raise ValueError(f"k must be between 1 and {self.components.shape[1]}, got {k!r}")
        return pca_model(spark, self.components[:, :k], self.spectrum[:k], k=k)

    @property
    def explained_variance(self) -> list[float]:
        """Explained-variance ratio of each of the ``k`` kept components."""
        return self.spectrum[: self.k]

    @property
    def cumulative_variance(self) -> list[float]:
        """Cumulative explained variance for 1..k components."""
        return np.cumsum(self.explained_variance).tolist()


@dataclasses.dataclass(frozen=True)
class Moments:
    """Row count, mean and sample covariance (``n - 1`` denominator) of the features."""

    count: int
    mean: np.ndarray
    covariance: np.ndarray


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


def feature_moments(features_df, *, dim: int = FEATURE_DIM) -> Moments:
    """Count, mean and covariance of ``features_df.features`` in one Spark pass.

    Each partition returns its count, column sums and Gram matrix ``X.T @ X``
    (``dim`` x ``dim`` float64, 13 MB at 1280), whatever its number of rows; the
    driver adds them up. Accumulating in float64 keeps the covariance equal to
    Spark ML's to about 1e-12 relative.

    Raises
    ------
    ValueError
        Fewer than 2 rows: a covariance needs two.
    """
    import pyarrow as pa

    def partial_sums(batches):
        count, total, gram = 0, np.zeros(dim), np.zeros((dim, dim))
        for batch in batches:
            column = batch.column(0)
            if len(column) == 0:
                continue
            rows = _feature_rows(column, dim)
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
    gram = sum(np.frombuffer(part["gram"]).reshape(dim, dim) for part in parts)
    mean = total / count
    covariance = (gram - count * np.outer(mean, mean)) / (count - 1)
    return Moments(count=count, mean=mean, covariance=covariance)


def _feature_rows(column, dim: int) -> np.ndarray:
    """An Arrow ``list<float>`` column of ``dim`` values per row as a float64 ``(rows, dim)`` matrix.

    Raises
    ------
    ValueError
        A row without features, or rows of another width than ``dim``.
    """
    if column.null_count:
        raise ValueError(f"PCA: {column.null_count} row(s) without features")
    values = column.flatten().to_numpy(zero_copy_only=False)
    if values.size != len(column) * dim:
        raise ValueError(f"PCA: the model takes {dim} features per row, "
                         f"got {values.size} values for {len(column)} rows")
    return values.astype(np.float64).reshape(len(column), dim)


def principal_components(covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (decreasing, negatives from round-off set to 0) and unit eigenvectors (columns).

    Each eigenvector is oriented so that its largest-magnitude entry is positive.

    Examples
    --------
    >>> values, vectors = principal_components(np.diag([1.0, 3.0]))
    >>> values.tolist(), vectors[:, 0].tolist()
    ([3.0, 1.0], [0.0, 1.0])
    """
    with one_blas_thread():  # many small steps: stalls when the cores are busy (fruits.analysis.blas)
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
    largest = np.abs(eigenvectors).argmax(axis=0)
    signs = np.sign(eigenvectors[largest, np.arange(eigenvectors.shape[1])])
    eigenvectors = eigenvectors * np.where(signs == 0, 1.0, signs)
    return np.clip(eigenvalues, 0, None), eigenvectors


def variance_spectrum(features_df) -> list[float]:
    """Explained-variance ratio of every principal component of ``features``, decreasing.

    The ratios equal Spark ML PCA's ``explainedVariance`` for the same data.
    """
    eigenvalues, _ = principal_components(feature_moments(features_df).covariance)
    return (eigenvalues / eigenvalues.sum()).tolist()


def pca_model(spark, components: np.ndarray, explained_variance, *, k: int | None = None):
    """A Spark ML ``PCAModel`` from given components, as if ``PCA.fit`` had found them.

    Parameters
    ----------
    spark : pyspark.sql.SparkSession
    components : numpy.ndarray
        ``(d, k)``: one unit principal component per column.
    explained_variance : sequence of float
        Explained-variance ratio of each of the ``k`` components.
    k : int or None
        Checked against ``components`` when given.

    Returns
    -------
    pyspark.ml.feature.PCAModel
        With ``k``, ``inputCol`` (``features_vector``) and ``outputCol`` (``pca_vector``)
        set; it saves and reloads like a fitted model.
    """
    from pyspark.ml.common import _py2java
    from pyspark.ml.feature import PCA
    from pyspark.ml.linalg import DenseMatrix, DenseVector
    from pyspark.ml.wrapper import JavaParams

    components = np.asarray(components, dtype=np.float64)
    explained = np.asarray(explained_variance, dtype=np.float64)
    rows, columns = components.shape
    if k is not None and k != columns:
        raise ValueError(f"k must equal the number of components ({columns}), got {k!r}")
    if explained.shape != (columns,):
        raise ValueError(
            f"explained_variance must hold one ratio per component ({columns}), got shape {explained.shape}")
    context = spark.sparkContext
    matrix = _py2java(context, DenseMatrix(rows, columns, components.flatten(order="F").tolist()))
    vector = _py2java(context, DenseVector(explained.tolist()))
    uid = PCA().uid  # the uid a fit would give: that of a PCA estimator
    java_model = context._jvm.org.apache.spark.ml.feature.PCAModel(uid, matrix, vector)
    model = JavaParams._from_java(java_model)
    model._set(k=columns, inputCol=VECTOR_COL, outputCol=PCA_VECTOR_COL)
    model._transfer_params_to_java()
    return model


def fit_pca(features_df, *, k: int, variance_target: float | None = None) -> PcaResult:
    """Fit PCA on ``features_df.features`` (array<float> of 1280) in one pass over the data.

    Parameters
    ----------
    features_df : pyspark.sql.DataFrame
        Holds a ``features`` column; read it from Parquet (it is scanned once).
    k : int
        Components to keep when ``variance_target`` is ``None``.
    variance_target : float or None
        If set, keep the smallest k whose cumulative explained variance reaches it.

    Returns
    -------
    PcaResult
        Its model equals Spark ML's ``PCA(k).fit`` up to the sign of each component; it
        also holds every component, for models of other k (:meth:`PcaResult.model_for`).
    """
    spectrum, components = decompose(features_df)
    chosen = smallest_k_for(spectrum, variance_target) if variance_target is not None else k
    if not 1 <= chosen <= len(spectrum):
        raise ValueError(f"k must be between 1 and {len(spectrum)}, got {chosen!r}")
    model = pca_model(features_df.sparkSession, components[:, :chosen], spectrum[:chosen], k=chosen)
    return PcaResult(model=model, k=chosen, spectrum=spectrum.tolist(), components=components)


def decompose(features_df, *, dim: int = FEATURE_DIM) -> tuple[np.ndarray, np.ndarray]:
    """Explained-variance ratios (decreasing) and every principal component of ``features``, in one pass.

    What :func:`fit_pca` keeps, for any number of components: the first ``k`` columns
    are what Spark ML's ``PCA(k).fit`` finds, up to sign.

    Raises
    ------
    ValueError
        Fewer than 2 rows, or rows that are all equal.
    """
    moments = feature_moments(features_df, dim=dim)
    eigenvalues, eigenvectors = principal_components(moments.covariance)
    total = eigenvalues.sum()
    if not total > 0:
        raise ValueError(f"PCA needs features that vary; all {moments.count} feature vectors are equal")
    return eigenvalues / total, eigenvectors


def project(model, features_df):
    """Apply a fitted PCA: ``path``, ``label``, ``pca_features`` (array<float> of k).

    The numbers of Spark ML's ``model.transform`` (``pc.T @ x`` in float64, not centred,
    then float32), computed with NumPy on each Arrow batch of the executors instead of a
    JVM vector per row and back (on the 20,622 features of the Test split: 2.2 -> 1.6 s
    with the write, equal to the last bit).

    Raises
    ------
    ValueError
        (in the task) a row without features or with another number of them than the model's.
    """
    import pyarrow as pa

    components = np.asarray(model.pc.toArray(), dtype=np.float64)  # (d, k), on the driver
    dim, k = components.shape

    def project_batches(batches):
        for batch in batches:
            features = batch.column(2)
            projected = (_feature_rows(features, dim) @ components).astype(np.float32)
            offsets = pa.array(np.arange(0, (len(features) + 1) * k, k, dtype=np.int32))
            yield pa.RecordBatch.from_arrays(
                [batch.column(0), batch.column(1), pa.ListArray.from_arrays(offsets, pa.array(projected.ravel()))],
                names=["path", "label", "pca_features"])

    return features_df.select("path", "label", "features").mapInArrow(
        project_batches, "path string, label string, pca_features array<float>")
