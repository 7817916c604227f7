"""Turn new photos into the same numbers as a finished run: its engine, weights, PCA and classifier.

The app needs to map a new photo to the same 50 numbers (and, if the run trained
one, a predicted fruit). ``project_images`` featurizes new images with the run's
engine, input size and weights, applies the saved PCA model and classifier, and
refuses when the weights available here are not those the run used: mixing
features of different weights would silently give meaningless coordinates.
"""

from __future__ import annotations

from fruits import engines
from fruits.analysis.pca import PCA_VECTOR_COL, project
from fruits.engines.weights import RANDOM
from fruits.featurize.step import choose_partitions, featurize_and_split
from fruits.inputs.listing import check_input, list_files
from fruits.inputs.reading import read_images, spark_can_access
from fruits.run.manifest import utc_now
from fruits.storage import location
from fruits.storage.layout import OutputLayout, current_run, holds_run
from fruits.storage.lease import Lease
from fruits.storage.publish import new_run_id, pointer_token
from fruits.storage.executor_view import check_executors_see
from fruits.storage.staged import staged_run


class IncompatibleRunError(ValueError):
    """The run cannot be reproduced here (other weights, missing model)."""


def weights_for(manifest: dict, override: str | None):
    """Resolve the weights to use: ``override``, else the source the run recorded."""
    recorded = manifest["weights"]["source"]
    requested = override or (RANDOM if recorded.startswith(RANDOM) else recorded)
    return engines.get(manifest["engine"]["name"]).resolve(requested, allow_random=False,
                                                           seed=manifest["parameters"]["seed"])


def project_images(spark, run_dir: str, input_path: str, output_dir: str, *, weights: str | None = None,
                   overwrite: bool = False) -> dict:
    """Featurize ``input_path`` like the run in ``run_dir`` and apply its PCA (and classifier).

    ``run_dir`` is a run's output folder (its current run is used) or one run's own
    folder. The projection is published like a run: into ``output_dir/runs/<id>/``,
    made current by ``output_dir/current.json``, under ``output_dir``'s lease.

    Returns
    -------
    dict
        The projection's manifest, also written to ``current_run(output_dir)/manifest.json``.

    Raises
    ------
    IncompatibleRunError
        ``run_dir`` is not a run, or these weights differ from the run's.
    fruits.storage.lease.OutputBusy
        Another run or projection is writing into ``output_dir``.
    """
    from pyspark.ml.classification import LogisticRegressionModel
    from pyspark.ml.feature import PCAModel
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    try:
        run = OutputLayout(current_run(run_dir.rstrip("/")))
        manifest = location.read_json(run.manifest)
    except FileNotFoundError as exc:
        raise IncompatibleRunError(f"{run_dir!r} holds no run (no current.json, no manifest.json)") from exc
    resolved = weights_for(manifest, weights)
    if resolved.sha256 != manifest["weights"]["sha256"]:
        raise IncompatibleRunError(
            f"the weights found here ({resolved.source}, sha256 {resolved.sha256[:12]}...) are not those "
            f"the run used ({manifest['weights']['source']}, sha256 {manifest['weights']['sha256'][:12]}...): "
            "their features would not match its PCA. Pass the run's weights with --weights."
        )
    out = OutputLayout(output_dir.rstrip("/"))
    if holds_run(out.root) and not overwrite:
        raise ValueError(f"{output_dir!r} already holds a projection; pass --overwrite to replace it")
    source = check_input(input_path)
    # An int8 run is re-quantized on the very calibration images it recorded, so the graph is the run's.
    engine = engines.get(manifest["engine"]["name"]).prepare(resolved, input_size=manifest["engine"]["input_size"],
                                                             recorded=manifest["engine"])
    run_id = new_run_id()
    lease = Lease.acquire(out.root, run_id)
    models = run
    try:
        if holds_run(out.root) and not overwrite:
            raise ValueError(f"{output_dir!r} already holds a projection; pass --overwrite to replace it")
        check_executors_see(spark, read={"input_path": input_path, "run_dir": run.root}, write={"output_dir": out.root})
        with staged_run(out.root, run_id, lease=lease, expected=pointer_token(out.root),
                        spark_writable=spark_can_access(spark, out.root)) as staged:
            staging = staged.layout
            listing = list_files(spark, source, f"{staging.staging}/listing")
            partitions = choose_partitions(spark, listing.image_count, None)
            outcome = featurize_and_split(
                read_images(listing.images(), partitions=partitions), engine, skipped=listing.skipped(),
                raw_path=f"{staging.staging}/raw", batch_size=manifest["engine"]["batch_size"],
                threads_per_task=manifest["engine"]["threads_per_task"],
            )
            models = _models_spark_can_read(spark, run)
            projected = project(PCAModel.load(models.pca_model), outcome.features)
            labels = (manifest.get("evaluation") or {}).get("labels")
            classified = bool(labels) and location.exists(run.classifier)
            if classified:
                from pyspark.ml.functions import array_to_vector

                classifier = LogisticRegressionModel.load(models.classifier)
                scored = classifier.transform(projected.withColumn(PCA_VECTOR_COL, array_to_vector("pca_features")))
                names = F.array(*[F.lit(name) for name in labels])
                projected = scored.select(
                    "path", "label", "pca_features",
                    F.element_at(names, F.col("prediction").cast("int") + 1).alias("predicted_label"),
                    F.array_max(vector_to_array("probability")).alias("probability"),
                )
            projected.write.mode("overwrite").parquet(staging.projected)
            outcome.rejected.coalesce(1).write.mode("overwrite").parquet(staging.rejected)
            count = spark.read.parquet(staging.projected).count()
            document = {
                "created_utc": utc_now(), "run": run.root, "run_id": manifest["run_id"], "projection_id": run_id,
                "input_path": listing.root, "weights": {"source": resolved.source, "sha256": resolved.sha256},
                "engine": manifest["engine"], "k": manifest["k"], "classifier": classified,
                "counts": {"input": listing.total, "projected": count,
                           "rejected": spark.read.parquet(staging.rejected).count()},
            }
            location.remove(staging.staging)
            location.write_json(document, staging.manifest)
        staged.remove_mirror()
    finally:
        lease.release()
        if models is not run:
            location.remove(models.root)
    return document


def _models_spark_can_read(spark, run: OutputLayout) -> OutputLayout:
    """``run`` itself, or a local copy of its ``pca_model/`` and ``classifier/`` when Spark cannot read it.

    EMR's Spark reads ``s3://`` itself; a local pyspark has no S3 connector, so the
    models of a run in a bucket are copied (fsspec) into a temporary folder first;
    the caller removes it.
    """
    if spark_can_access(spark, run.root):
        return run
    return OutputLayout(location.readable_copy(run.root, ("pca_model", "classifier"), prefix="fruits-run-models-"))
