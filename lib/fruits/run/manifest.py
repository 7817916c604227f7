"""The run manifest: what was asked, what ran, what came out, and how long it took.

Written as ``manifest.json`` next to the outputs, so a result can be traced to its
parameters, weights and package versions without the notebook that produced it.
:func:`build_manifest` is the one place that decides its fields; the steps of
:mod:`fruits.run.steps` only return figures.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import platform

from fruits.analysis.pca import PcaResult
from fruits.engines import PreparedEngine
from fruits.inputs.inventory import Increment
from fruits.run.plan import PreparedRun
from fruits.run.timing import StageTimer
from fruits.spark.session import runs_short_run_jvm
from fruits.storage.layout import run_layout

#: Packages whose versions decide the features; recorded in every manifest.
TRACKED_PACKAGES = (
    "fruits-emr", "pyspark", "tensorflow-cpu", "tensorflow", "keras", "numpy",
    "pandas", "pyarrow", "pillow", "fsspec",
)


def package_versions() -> dict[str, str]:
    """Installed versions of :data:`TRACKED_PACKAGES` (absent ones are left out) and Python."""
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def utc_now() -> str:
    """ISO-8601 UTC timestamp, second precision."""
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


#: The outputs a manifest points to, each a folder of the run.
OUTPUTS = ("features", "pca", "pca_model", "rejected")


def build_manifest(spark, prepared: PreparedRun, *, engine: PreparedEngine, classes: dict,
                   featurized_by_class: dict, increment: Increment,
                   counts: dict, rejected_by_reason: dict,
                   pca: PcaResult, pca_reused: bool, partitions: int, timer: StageTimer,
                   evaluation: dict | None) -> dict:
    """The manifest of a finished run: parameters, weights, engine, Spark, counts, PCA, timings, outputs."""
    params, final = prepared.params, prepared.layout
    published = run_layout(final.root, prepared.run_id)
    featurize_seconds = timer.seconds.get("featurize")
    return {
        "run_id": prepared.run_id,
        "created_utc": utc_now(),
        "demo": params.is_demo,
        "synthetic_data": params.is_demo,
        "input_path": prepared.input_path,
        "output_dir": final.root,
        "run_dir": published.root,
        "mode": params.mode,
        "parameters": params.to_dict(),
        "weights": {
            "source": prepared.weights.source,
            "sha256": prepared.weights.sha256,
            "random": prepared.weights.is_random,
        },
        "engine": {"name": params.engine, "input_size": params.image_size, "batch_size": params.network_batch_size,
                   "threads_per_task": params.threads_per_task, "sha256": engine.sha256,
                   **engine.details},
        "spark": {"version": spark.version, "master": spark.sparkContext.master,
                  "default_parallelism": spark.sparkContext.defaultParallelism,
                  "partitions": partitions, "short_run_jvm": runs_short_run_jvm(spark)},
        "versions": package_versions(),
        "counts": counts,
        "incremental": {
            "previous_run_id": (prepared.previous or {}).get("run_id"),
            "carried_over": increment.carried_over,
            "removed_since_previous": increment.removed,
        },
        "rejected_by_reason": rejected_by_reason,
        "classes": classes,
        "featurized_by_class": featurized_by_class,
        "k": pca.k,
        "variance_target": params.variance_target,
        "pca_fit": "reused" if pca_reused else "refit",
        "explained_variance": pca.explained_variance,
        "cumulative_variance": pca.cumulative_variance,
        "cumulative_variance_at_k": pca.cumulative_variance[-1],
        "spectrum": pca.spectrum,
        "seconds": {**timer.seconds, "total": timer.total},
        "images_per_second": (round(counts["featurized_this_run"] / featurize_seconds, 2)
                              if featurize_seconds and counts["featurized_this_run"] else None),
        "outputs": {name: getattr(published, name) for name in OUTPUTS},
        "evaluation": evaluation,
    }

