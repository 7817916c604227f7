"""PCA stage benchmark: the one-pass fit against the former spectrum pass + Spark ML fit.

Features of the full Test split (20,622 x 1280 by default) are synthesized with a
realistic shape (non-negative, a few dozen correlated factors with a power-law
spectrum, as MobileNetV2's pooled features of fruit photos) and written to Parquet
in as many files as a run writes (about 256 rows each), so the stage reads what it
reads in a run. Then, in one Spark session, rounds interleave:

* ``before``: the spectrum pass (per-partition Gram matrices, eigenvalues on the
  driver) followed by ``pyspark.ml.feature.PCA(k).fit``, as the pipeline did;
* ``after``: :func:`fruits.analysis.pca.fit_pca`, one pass and NumPy's ``eigh``.

It prints the seconds of each round and the ratio of the best rounds, and checks
that both give the same components (up to sign) and explained variance. Quote the
ratio: the machine is shared and absolute times move with its load.

With ``--sweep`` it measures the evaluation's k sweep instead (``pca_sweep.*``):
``before``, a Spark ML ``PCA(k).fit`` for each k the sweep scores besides the run's
(10, 20, 100, 200), as :func:`fruits.analysis.evaluate.evaluate` did; ``after``, one
:func:`fruits.analysis.pca.decompose` whose leading columns serve every k (and none at all
when the run's own components can be used).

    python bench/pca_stage.py                 # 20,622 rows, k=50, 3 rounds
    python bench/pca_stage.py --rows 2040
    python bench/pca_stage.py --sweep --repeat 1
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROWS_PER_FILE = 256  # fruits.featurize.step.IMAGES_PER_PARTITION: a run writes about this many rows per file


def synthetic_features(count: int, *, seed: int = 0, dim: int = 1280) -> np.ndarray:
    """Non-negative rows driven by 60 factors with power-law scales, plus small noise."""
    rng = np.random.default_rng(seed)
    factors = 60
    loadings = rng.standard_normal((factors, dim)) * 0.3
    latent = rng.standard_normal((count, factors)) / np.arange(1, factors + 1) ** 0.8
    return np.maximum(0.4 + latent @ loadings + 0.05 * rng.standard_normal((count, dim)), 0).astype(np.float32)


def write_features(spark, path: str, count: int) -> None:
    import pandas as pd

    rows = synthetic_features(count)
    frame = pd.DataFrame({"path": [f"/data/Test/c{i % 120}/{i}.jpg" for i in range(count)],
                          "label": [f"c{i % 120}" for i in range(count)],
                          "features": list(rows)})
    files = max(1, math.ceil(count / ROWS_PER_FILE))
    (spark.createDataFrame(frame, "path string, label string, features array<float>")
     .repartition(files).write.mode("overwrite").parquet(path))


def before(features, k: int):
    """The former stage: the spectrum pass, then a second pass and a JVM SVD in Spark ML."""
    from pyspark.ml.feature import PCA

    from fruits.analysis.pca import PCA_VECTOR_COL, VECTOR_COL, variance_spectrum, with_vectors

    spectrum = variance_spectrum(features)
    model = PCA(k=k, inputCol=VECTOR_COL, outputCol=PCA_VECTOR_COL).fit(with_vectors(features))
    return model, spectrum


def after(features, k: int):
    from fruits.analysis.pca import fit_pca

    result = fit_pca(features, k=k)
    return result.model, result.spectrum


SWEEP_KS = (10, 20, 100, 200)  # fruits.analysis.evaluate.K_SWEEP without the run's k (50)


def sweep_before(vectors) -> None:
    """The former sweep: one Spark ML fit (a pass and a JVM SVD) per k."""
    from pyspark.ml.feature import PCA

    from fruits.analysis.pca import PCA_VECTOR_COL, VECTOR_COL

    for k in SWEEP_KS:
        PCA(k=k, inputCol=VECTOR_COL, outputCol=PCA_VECTOR_COL).fit(vectors)


def sweep_after(vectors) -> None:
    from fruits.analysis.pca import decompose

    decompose(vectors)


def sweep(spark, features, args) -> int:
    """Time the evaluation sweep's PCA both ways on cached vectors, as the evaluation holds them."""
    from fruits.analysis.pca import with_vectors

    vectors = with_vectors(features).cache()
    vectors.count()
    seconds: dict[str, list[float]] = {"before": [], "after": []}
    for round_ in range(args.repeat):
        for name, fit in (("before", sweep_before), ("after", sweep_after)):
            start = time.perf_counter()
            fit(vectors)
            seconds[name].append(time.perf_counter() - start)
            print(f"round {round_ + 1} {name:>6}: {seconds[name][-1]:6.2f} s", flush=True)
    best = {name: min(values) for name, values in seconds.items()}
    summary = {"rows": args.rows, "ks": SWEEP_KS, "master": args.master, "cores": os.cpu_count(),
               "seconds": seconds, "best_seconds": best, "speedup": best["before"] / best["after"]}
    text = (f"Evaluation sweep's PCA on {args.rows:,} synthetic 1280-wide feature rows (k = "
            f"{', '.join(map(str, SWEEP_KS))}; {args.master}, {os.cpu_count()} shared cores, best of {args.repeat}):"
            f" before, a Spark ML fit per k: {best['before']:.1f} s; after, one decomposition: "
            f"{best['after']:.1f} s ({summary['speedup']:.1f}x).\n")
    return _report(args.out, "pca_sweep", text, summary)



def _report(folder: str, name: str, text: str, summary: dict) -> int:
    """Write ``name``.md and ``name``.json into ``folder`` and print the text."""
    os.makedirs(folder, exist_ok=True)
    Path(folder, f"{name}.md").write_text(text)
    Path(folder, f"{name}.json").write_text(json.dumps(summary, indent=2))
    print("\n" + text)
    return 0

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_622, help="feature rows (20,622: the full Test split)")
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds; each way keeps its best")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--sweep", action="store_true", help="time the evaluation's k sweep instead (pca_sweep.*)")
    args = parser.parse_args()

    from fruits.spark.session import local_spark

    spark = local_spark(args.master, app_name="bench-pca", driver_memory="2g")
    seconds: dict[str, list[float]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="fruits-pca-bench-") as scratch:
        path = os.path.join(scratch, "features")
        write_features(spark, path, args.rows)
        features = spark.read.parquet(path)
        if args.sweep:
            code = sweep(spark, features, args)
            spark.stop()
            return code
        print(f"{args.rows} rows in {features.rdd.getNumPartitions()} partitions "
              f"({len([f for f in os.listdir(path) if f.endswith('.parquet')])} files), k={args.k}, {args.master}", flush=True)
        results = {}
        for round_ in range(args.repeat):
            for name, fit in (("before", before), ("after", after)):
                start = time.perf_counter()
                results[name] = fit(features, args.k)
                seconds[name].append(time.perf_counter() - start)
                print(f"round {round_ + 1} {name:>6}: {seconds[name][-1]:6.2f} s", flush=True)
    (old, old_spectrum), (new, new_spectrum) = results["before"], results["after"]
    signs = np.sign((old.pc.toArray() * new.pc.toArray()).sum(axis=0))
    pc_difference = float(np.abs(old.pc.toArray() * signs - new.pc.toArray()).max())
    variance_difference = float(np.abs(old.explainedVariance.toArray() - new.explainedVariance.toArray()).max())
    spark.stop()
    spectrum_difference = float(np.abs(np.asarray(old_spectrum) - np.asarray(new_spectrum)).max())
    best = {name: min(values) for name, values in seconds.items()}
    summary = {
        "rows": args.rows, "k": args.k, "master": args.master, "cores": os.cpu_count(),
        "seconds": seconds, "best_seconds": best, "speedup": best["before"] / best["after"],
        "max_abs_difference": {"components_up_to_sign": pc_difference,
                               "explained_variance": variance_difference, "spectrum": spectrum_difference},
    }
    text = (f"PCA stage on {args.rows:,} synthetic 1280-wide feature rows (k={args.k}, {args.master}, "
            f"{os.cpu_count()} cores, best of {args.repeat} interleaved rounds):\n\n"
            f"| way | best s | all rounds (s) |\n|---|---|---|\n"
            f"| before: spectrum pass + Spark ML PCA.fit | {best['before']:.2f} | "
            f"{', '.join(f'{s:.2f}' for s in seconds['before'])} |\n"
            f"| after: one pass + numpy eigh (fit_pca) | {best['after']:.2f} | "
            f"{', '.join(f'{s:.2f}' for s in seconds['after'])} |\n\n"
            f"Ratio before/after: {summary['speedup']:.2f}x. Largest differences: components (up to sign) "
            f"{pc_difference:.1e}, explained variance {variance_difference:.1e}.\n")
    return _report(args.out, "pca_stage", text, summary)


if __name__ == "__main__":
    sys.exit(main())
