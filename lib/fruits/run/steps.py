"""The Spark work of a run, one function per named step: read, featurize, write, reduce, evaluate.

Each step takes what the earlier ones produced and returns what the later ones
need; none of them decides where outputs go or when they become visible (that is
:mod:`fruits.run.execute`'s job) or what the manifest says (:mod:`fruits.run.manifest`).
"""

from __future__ import annotations

import dataclasses

from fruits import engines
from fruits.analysis.evaluate import evaluate as fit_and_score
from fruits.analysis.pca import PcaResult, fit_pca, project
from fruits.engines import PreparedEngine
from fruits.featurize.step import (FEATURES_PARQUET_OPTIONS, FEATURES_SCHEMA, REJECTED_SCHEMA, Outcome,
                                   choose_partitions, featurize_and_split, read_written)
from fruits.inputs import calibration, inventory
from fruits.inputs.listing import Listing, list_files
from fruits.inputs.reading import NOT_READ, read_images
from fruits.run.plan import PreparedRun
from fruits.storage import location
from fruits.storage.layout import OutputLayout


@dataclasses.dataclass
class ReadImages:
    """What :func:`read` found: the listing, the images to featurize (read by the executors) and the engine."""

    listing: Listing
    increment: inventory.Increment
    images: object  # pyspark.sql.DataFrame: path, label, content, read_error
    partitions: int
    #: ``prepared.engine``, or the run's engine calibrated on this run's listing (``onnx-int8``).
    engine: PreparedEngine


def read(spark, prepared: PreparedRun, staged: OutputLayout) -> ReadImages:
    """List the input, split it into new and carried-over images, and plan reading the new ones.

    Only counts and at most 100 calibration paths come back to the driver; the
    images are read by the executors in the featurization's own stage.
    """
    params = prepared.params
    listing = list_files(spark, prepared.source, f"{staged.staging}/listing")  # the run's one snapshot
    previous_inventory = prepared.previous_layout.inventory if prepared.previous is not None else None
    increment = inventory.plan(listing, prepared.previous, previous_inventory)
    engine = prepared.engine or calibrated_engine(prepared, listing)
    partitions = choose_partitions(spark, max(1, increment.to_process_count), params.partitions)
    images = read_images(increment.to_process, partitions=partitions)
    return ReadImages(listing, increment, images, partitions, engine)


def calibrated_engine(prepared: PreparedRun, listing: Listing) -> PreparedEngine:
    """The run's engine, calibrated on images of this run's listing chosen in Spark (``onnx-int8``)."""
    params = prepared.params
    engine = engines.get(params.engine)
    paths = calibration.choose_calibration(listing.images(), count=engine.calibration_images)
    return engine.prepare(prepared.weights, input_size=params.image_size, inputs=paths)


def featurize(spark, prepared: PreparedRun, read_result: ReadImages, staged: OutputLayout) -> Outcome:
    """Featurize the images read; returns the outcome (features and rejections)."""
    params = prepared.params
    spark.sparkContext.setJobDescription(f"fruits: featurize {read_result.increment.to_process_count} images")
    return featurize_and_split(
        read_result.images, read_result.engine, skipped=read_result.listing.skipped(),
        raw_path=f"{staged.staging}/raw", batch_size=params.network_batch_size,
        threads_per_task=params.threads_per_task,
    )


def write_features(spark, prepared: PreparedRun, read_result: ReadImages, outcome: Outcome,
                   staged: OutputLayout) -> tuple[dict, dict, dict]:
    """Write ``features/``, ``rejected/`` (with what is carried over) and ``inventory/``,
    and check that every file given is accounted for exactly once.

    Every count is a Spark aggregation over the run's listing snapshot and the
    outputs just written.

    Returns
    -------
    tuple
        ``(counts, rejected_by_reason, featurized_by_class)``: the last counted in the same
        job as the total, for the report's images-per-class figure.

    Raises
    ------
    RuntimeError
        The counts do not reconcile (nothing is published then).
    """
    from pyspark.sql import functions as F

    listing, previous, increment = read_result.listing, prepared.previous_layout, read_result.increment
    features, rejected = outcome.features, outcome.rejected
    if increment.carried_over:
        features = features.unionByName(inventory.carried_over(spark, previous.features, increment.unchanged))
        rejected = rejected.unionByName(inventory.carried_over(spark, previous.rejected, increment.unchanged))
    features.write.options(**FEATURES_PARQUET_OPTIONS).mode("overwrite").parquet(staged.features)
    rejected.coalesce(1).write.mode("overwrite").parquet(staged.rejected)
    not_read = outcome.rejected.where(F.col("reason").startswith(NOT_READ))
    inventory.inventory(listing, not_read).coalesce(1).write.mode("overwrite").parquet(staged.inventory)

    featurized_by_class = dict(sorted(
        (row.label, row["count"])
        for row in read_written(spark, staged.features, FEATURES_SCHEMA).groupBy("label").count().collect()))
    featurized = sum(featurized_by_class.values())
    by_reason = {
        row.kind: row["count"]
        for row in read_written(spark, staged.rejected, REJECTED_SCHEMA)
        .groupBy(F.substring_index("reason", ":", 1).alias("kind")).count().collect()
    }
    counts = {"input": listing.total, "images": listing.image_count, "featurized": featurized,
              "rejected": sum(by_reason.values()),
              # Without carried-over rows, features/ holds this run's only (no second scan of them).
              "featurized_this_run": outcome.features.count() if increment.carried_over else featurized}
    if counts["featurized"] + counts["rejected"] != counts["input"]:
        raise RuntimeError(
            f"counts do not reconcile: {counts['input']} input files, {featurized} featurized, "
            f"{counts['rejected']} rejected. Nothing was published."
        )
    return counts, dict(sorted(by_reason.items())), featurized_by_class


def reuses_pca(prepared: PreparedRun, increment: inventory.Increment) -> bool:
    """True when this run keeps the previous run's PCA (``pca='reuse'`` on an incremental run)."""
    return prepared.params.pca == "reuse" and increment.is_incremental


def reduce(spark, prepared: PreparedRun, increment: inventory.Increment, staged: OutputLayout) -> PcaResult:
    """Fit PCA on ``features/`` (or reuse the previous run's model)."""
    params = prepared.params
    features = read_written(spark, staged.features, FEATURES_SCHEMA)
    spark.sparkContext.setJobDescription("fruits: PCA")
    if reuses_pca(prepared, increment):
        from pyspark.ml.feature import PCAModel

        model = PCAModel.load(prepared.previous_layout.pca_model)
        pca = PcaResult(model=model, k=model.getK(), spectrum=list(prepared.previous["spectrum"]))
    else:
        pca = fit_pca(features, k=params.k, variance_target=params.variance_target)
    return pca


def write_reduction(spark, pca: PcaResult, staged: OutputLayout) -> None:
    """Write every image's projection (``pca/``) and the model (``pca_model/``)."""
    features = read_written(spark, staged.features, FEATURES_SCHEMA)
    project(pca.model, features).write.mode("overwrite").parquet(staged.pca)
    pca.model.write().overwrite().save(staged.pca_model)
    location.remove(staged.staging)


def evaluate(spark, prepared: PreparedRun, staged: OutputLayout, pca: PcaResult, engine: PreparedEngine) -> dict:
    """Featurize the training set with the same engine, then fit and score the classifier."""

    params = prepared.params
    spark.sparkContext.setJobDescription("fruits: evaluation")
    train = list_files(spark, prepared.train_source, f"{staged.staging}/train_listing")
    partitions = choose_partitions(spark, train.image_count, params.partitions)
    outcome = featurize_and_split(
        read_images(train.images(), partitions=partitions), engine, skipped=train.skipped(),
        raw_path=f"{staged.staging}/train_raw", batch_size=params.network_batch_size,
        threads_per_task=params.threads_per_task,
    )
    outcome.features.write.options(**FEATURES_PARQUET_OPTIONS).mode("overwrite").parquet(staged.train_features)
    train_rejected = outcome.rejected.count()
    result = fit_and_score(read_written(spark, staged.train_features, FEATURES_SCHEMA),
                           read_written(spark, staged.features, FEATURES_SCHEMA),
                           pca.model, spectrum=pca.spectrum, components=pca.components, seed=params.seed)
    result.classifier.write().overwrite().save(staged.classifier)
    location.remove(staged.staging)
    return {"train_path": train.root, "train_files": train.total, "train_rejected": train_rejected,
            "labels": result.labels, **result.metrics}
