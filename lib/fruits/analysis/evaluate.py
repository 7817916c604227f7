"""Are the features any good? A Spark ML logistic regression on PCA features, scored on the run's images.

The study reported only that 50 components keep 73 % of the variance. The app team
needs to know whether the features recognise fruits and how small the
representation can be: a multinomial logistic regression is fitted on the PCA
features of a labelled training set (Fruits-360's ``Training/`` layout) and scored
on the run's own images (its ``Test/``), for the run's k and for a sweep of k
including the full 1280 features. Classes present in only one of the two sets are
reported, and their images are left out of the scores (a classifier cannot name a
class it never saw), never silently dropped.

Each k of the sweep projects with the leading k principal components of the scored
images. They come from one decomposition, not from a Spark ML ``PCA(k).fit`` per k
(a pass over the data and a JVM SVD each: about 400 s of a 601 s run on the full
Test split): the run's own components when the scored images are the run's images,
otherwise one pass over the scored images (:func:`fruits.analysis.pca.decompose`).

Where the fits run: a small evaluation (the demo's 120 training images, a slice) is
collected to the driver once and fitted there with NumPy, Spark ML's objective without
one Spark job per L-BFGS iteration (:mod:`fruits.analysis.logistic`; the demo's
evaluation went from 27.0 to 8.1 s, docs/performance.md). A large one stays in Spark ML.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from fruits.analysis import logistic
from fruits.analysis.pca import PCA_VECTOR_COL, VECTOR_COL, decompose, pca_model, with_vectors
from fruits.featurize.shapes import FEATURE_DIM

#: Component counts compared in the report (plus the run's k and the full 1280 features).
K_SWEEP = (10, 20, 50, 100, 200)

LABEL_INDEX = "label_index"

#: Classifier fits run at once (:func:`_run_concurrently`): enough to fill the gaps between one
#: fit's small jobs; few, since each fit of a large training set caches its own projected rows.
CONCURRENT_FITS = 3

#: Training plus scored rows times 1280 up to which every fit runs on the driver (8 M
#: float64 values, 64 MB: 6,250 images). Above it a fit's passes over the rows belong on
#: the executors, and Spark ML fits them.
DRIVER_FIT_MAX_VALUES = 8_000_000


@dataclasses.dataclass
class Evaluation:
    """Metrics for the run's k, the sweep, and the classifier that produced them."""

    metrics: dict
    classifier: object
    labels: list[str]


def scores(truth: np.ndarray, predicted: np.ndarray, labels: list[str], *, top_pairs: int = 10) -> dict:
    """Accuracy, macro-F1, per-class accuracy and the most confused class pairs.

    Examples
    --------
    >>> s = scores(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), ["a", "b"])
    >>> s["accuracy"], round(s["macro_f1"], 3)
    (0.75, 0.733)
    """
    size = len(labels)
    confusion = np.zeros((size, size), dtype=np.int64)
    np.add.at(confusion, (truth.astype(int), predicted.astype(int)), 1)
    correct = np.diag(confusion)
    support = confusion.sum(axis=1)
    predicted_count = confusion.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted_count > 0, correct / predicted_count, 0.0)
        recall = np.where(support > 0, correct / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = support > 0
    off_diagonal = confusion.copy()
    np.fill_diagonal(off_diagonal, 0)
    rows, columns = np.nonzero(off_diagonal)
    pairs = sorted(
        ({"true": labels[i], "predicted": labels[j], "count": int(off_diagonal[i, j])}
         for i, j in zip(rows, columns)),
        key=lambda pair: (-pair["count"], pair["true"], pair["predicted"]),
    )[:top_pairs]
    return {
        "accuracy": float(correct.sum() / max(1, confusion.sum())),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class_accuracy": {labels[i]: float(recall[i]) for i in range(size) if present[i]},
        "most_confused": pairs,
    }


def _fit_and_score(train, test, features_col: str, labels: list[str], seed: int):
    from pyspark.ml.classification import LogisticRegression

    model = LogisticRegression(
        featuresCol=features_col, labelCol=LABEL_INDEX, family="multinomial",
        maxIter=200, regParam=1e-3, standardization=True,
    ).fit(train)
    predictions = model.transform(test).select(LABEL_INDEX, "prediction").toPandas()
    return model, scores(predictions[LABEL_INDEX].to_numpy(), predictions["prediction"].to_numpy(), labels)


def _run_concurrently(fits: dict) -> dict:
    """Run each fit in its own driver thread, at most :data:`CONCURRENT_FITS` at once; results by key.

    A logistic regression's L-BFGS runs one small Spark job per iteration: on a small training
    set each job is mostly scheduling latency, and the fits one after the other left the cores
    idle (the demo's seven fits on 120 images: 15.4 s of its 40). Spark schedules jobs of
    several driver threads side by side; each fit sees the same cached rows in the same
    partitions, so it ends where it ends alone (the same coefficients and scores).
    ``inheritable_thread_target`` carries the caller's job description and group to the threads.
    """
    import concurrent.futures

    from pyspark import inheritable_thread_target

    with concurrent.futures.ThreadPoolExecutor(CONCURRENT_FITS, thread_name_prefix="fruits-fit") as pool:
        futures = {key: pool.submit(inheritable_thread_target(fit)) for key, fit in fits.items()}
        return {key: future.result() for key, future in futures.items()}


def evaluate(train_df, test_df, run_model, *, spectrum: list[float], components: np.ndarray | None = None,
             seed: int = 0, k_sweep: tuple[int, ...] = K_SWEEP) -> Evaluation:
    """Fit and score the classifier for the run's PCA, then for each k of the sweep and for 1280.

    When the training and scored rows' features fit in :data:`DRIVER_FIT_MAX_VALUES` and
    every fit is small enough for Newton steps (classes x (training rows + 1) up to
    :data:`fruits.analysis.logistic.NEWTON_MAX_PARAMETERS`), they are collected once and
    every fit runs on the driver (:mod:`fruits.analysis.logistic`: Spark ML's objective,
    without a Spark job per L-BFGS iteration); otherwise Spark ML fits them, several at once.

    Parameters
    ----------
    train_df, test_df : pyspark.sql.DataFrame
        ``path``, ``label``, ``features`` (array<float> of 1280).
    run_model : pyspark.ml.feature.PCAModel
        The run's fitted PCA, scored as it is.
    spectrum : list of float
        The run's explained-variance ratios, for the sweep's cumulative variance.
    components : numpy.ndarray or None
        Every principal component of ``test_df`` (``PcaResult.components`` of the run's
        fit). Used for the sweep when every image of ``test_df`` is scored; otherwise (or
        when ``None``, e.g. a reused model) the sweep's components come from one pass over
        the scored images. Either way each k gets what ``PCA(k).fit`` on the scored images
        gives, up to sign.
    """
    from pyspark.sql import functions as F

    train_labels = {r.label for r in train_df.select("label").distinct().collect()}
    test_labels = {r.label for r in test_df.select("label").distinct().collect()}
    common = sorted(train_labels & test_labels)
    if len(common) < 2:
        raise ValueError(f"evaluation needs at least 2 classes in both sets, found {len(common)} in common")
    train, test = (frame.where(F.col("label").isin(common)) for frame in (train_df, test_df))
    train_count, test_count = train.count(), test.count()
    run_k = run_model.getK()
    cumulative = np.cumsum(spectrum)
    ks = [k for k in sorted(set(k_sweep) - {run_k}) if k < FEATURE_DIM]
    test_only = sorted(test_labels - train_labels)
    bases = {run_k: (run_model.pc.toArray(), run_model.explainedVariance.toArray())}  # k: (components, ratios)
    if ks:
        sweep_spectrum, sweep_components = (
            (np.asarray(spectrum), components) if components is not None and not test_only
            else decompose(with_vectors(test)))
        bases.update({k: (sweep_components[:, :k], sweep_spectrum[:k]) for k in ks})
    bases[FEATURE_DIM] = None  # the features themselves
    # On the driver only where every fit takes Newton steps: L-BFGS on the driver would run up
    # to 2,000 passes over the rows where Spark ML stops at 200, spread over the executors.
    on_driver = ((train_count + test_count) * FEATURE_DIM <= DRIVER_FIT_MAX_VALUES
                 and logistic.newton_applies(train_count, FEATURE_DIM, len(common)))
    fit = _fit_on_driver if on_driver else _fit_in_spark
    classifier, fitted, labels = fit(train, test, bases, run_model, common=common, seed=seed)
    sweep = [{"k": k, "cumulative_variance": 1.0 if k == FEATURE_DIM else float(cumulative[k - 1]),
              "accuracy": result["accuracy"], "macro_f1": result["macro_f1"]}
             for k, result in fitted.items()]
    counts = test_df.groupBy("label").count().toPandas().set_index("label")["count"]
    metrics = {
        **fitted[run_k],
        "k": run_k,
        "train_images": train_count,
        "test_images_scored": test_count,
        "classes_scored": len(common),
        "train_only_classes": sorted(train_labels - test_labels),
        "test_only_classes": test_only,
        "test_images_not_scored": int(counts.reindex(test_only).fillna(0).sum()),
        "sweep": sorted(sweep, key=lambda row: row["k"]),
    }
    return Evaluation(metrics=metrics, classifier=classifier, labels=labels)


def _fit_on_driver(train, test, bases: dict, run_model, *, common: list[str], seed: int):
    """Every fit with NumPy on rows collected once; the run's k as a Spark ML model to save."""
    x_train, y_train = _collect(train, common)
    x_test, y_test = _collect(test, common)
    fitted, results = {}, {}
    for k, basis in bases.items():
        project = (lambda x: x) if basis is None else (lambda x, components=basis[0]: x @ components)
        fitted[k] = logistic.fit_multinomial(project(x_train), y_train, len(common))
        results[k] = scores(y_test, fitted[k].predict(project(x_test)), common)
    classifier = logistic.spark_model(train.sparkSession, fitted[run_model.getK()],
                                      features_col=PCA_VECTOR_COL, label_col=LABEL_INDEX)
    return classifier, results, list(common)


def _collect(frame, labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Features (rows x 1280, float64) and class indices (the position in ``labels``) of ``frame``."""
    rows = frame.select("label", "features").toPandas()
    index = {label: position for position, label in enumerate(labels)}
    features = np.stack(rows["features"].to_numpy()).astype(np.float64) if len(rows) else np.empty((0, FEATURE_DIM))
    return features, rows["label"].map(index).to_numpy(dtype=np.int64)


def _fit_in_spark(train, test, bases: dict, run_model, *, common: list[str], seed: int):
    """Every fit by Spark ML, :data:`CONCURRENT_FITS` at once, on rows cached in the executors."""
    from pyspark.ml.feature import StringIndexer

    indexer = StringIndexer(inputCol="label", outputCol=LABEL_INDEX, stringOrderType="alphabetAsc").fit(train)
    labels = list(indexer.labels)
    train, test = (with_vectors(indexer.transform(frame)).cache() for frame in (train, test))
    run_k = run_model.getK()
    fits = {}
    for k, basis in bases.items():
        if basis is None:
            fits[k] = lambda: _fit_and_score(train, test, VECTOR_COL, labels, seed)
        else:
            model = run_model if k == run_k else pca_model(train.sparkSession, *basis, k=k)
            fits[k] = (lambda model=model: _fit_and_score(model.transform(train), model.transform(test),
                                                          PCA_VECTOR_COL, labels, seed))
    fitted = _run_concurrently(fits)
    train.unpersist()
    test.unpersist()
    return fitted[run_k][0], {k: result for k, (_, result) in fitted.items()}, labels


def sweep_frame(metrics: dict) -> pd.DataFrame:
    """The sweep as a table: k, cumulative variance, accuracy, macro-F1."""
    return pd.DataFrame(metrics["sweep"]).set_index("k")
