"""Peers side by side: the study's pattern, Spark's own ``predict_batch_udf`` and the project, same images, same run.

Every peer turns the same real Fruits-360 Test images into a ``path``, ``label``,
``features`` Parquet, on the same local Spark (``local[2]``, the project's session
settings and driver memory, :func:`fruits.spark.session.local_spark`), each in a fresh
process timed from start to exit (Python and Spark start included):

* ``study``: the study notebook's code up to its features write (``bench/study_pattern.py
  --features-only``: ``binaryFile``, its scalar-iterator pandas UDF rebuilding Keras'
  MobileNetV2 in every task, ``repartition(24)``, ``cache`` + ``count``, write);
* ``predict_batch_udf``: what a Spark user would write with Spark's own
  :func:`pyspark.ml.functions.predict_batch_udf` and the project's model: the images
  read by Spark's ``binaryFile`` reader (its own partitioning), the ONNX graph of the
  project's default engine (``engines.get("onnx").prepare(...)``, the bytes a run
  broadcasts) broadcast once, ``make_predict_fn`` building the engine's ONNX Runtime
  session once per Python worker (Spark's ``ModelCache``), the predict function
  decoding and resizing each image exactly as the project does
  (:func:`fruits.featurize.preprocess.decode_and_resize`), in batches of the project's
  default network batch size; a plain Parquet write;
* ``project``: the project's own read, featurize and write steps
  (:mod:`fruits.run.steps`: plan, listing, read on the executors, ``mapInArrow``, the
  ``features/``, ``rejected/`` and ``inventory/`` writes and their reconciled counts,
  published), the like-for-like row;
* ``fruits-run``: ``fruits run`` with its defaults, end to end (PCA, the notebook and
  its figures, the HTML report too): not like for like, shown for what a user waits for.

Rounds (``--repeat``) interleave the peers; each keeps its best wall and lists all.
Afterwards the features every peer wrote are compared, image by image, with the
project's (cosine similarity, largest absolute difference, bit-identical count), so
that nobody compares different work: ``predict_batch_udf`` runs the same graph on
the same pixels and should match exactly; the study's Keras model in float32 comes
close but not bit for bit. Results go to ``bench/results/peers/NAME.md`` and ``.json``.

    python bench/peers.py                    # 2,040 Test images (17 per class), all four peers
    python bench/peers.py --repeat 3         # best of 3 interleaved rounds
    python bench/peers.py --full             # the whole Test split
    python bench/peers.py --images 24 --peers study predict_batch_udf project --name tiny

The machine is shared: quote the ratios of one run, not absolute times.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from end_to_end import SLICE_IMAGES, keep_best, run_fruits, run_study, timed  # noqa: E402  (bench/ is not a package)
from benchmark import select_images  # noqa: E402

from fruits.spark.settings import LOCAL_MASTER  # noqa: E402

#: The peers, in the order of each round and of the table.
PEERS = ("study", "predict_batch_udf", "project", "fruits-run")

#: The master every peer runs on: ``fruits run``'s default (``bench/study_pattern.py``'s too).
MASTER = LOCAL_MASTER

#: What each peer does, for the report.
NOTES = {
    "study": "the study notebook's code up to its features write: binaryFile, scalar-iterator pandas UDF "
             "rebuilding Keras MobileNetV2 per task (weights broadcast from the driver's model), repartition(24), "
             "cache + count, Parquet write",
    "predict_batch_udf": "Spark's own pyspark.ml.functions.predict_batch_udf: binaryFile (Spark's own partitioning), "
                         "the project's default ONNX graph broadcast, one ONNX Runtime session per Python worker "
                         "(make_predict_fn, Spark's ModelCache), the project's decode and resize in predict, "
                         "plain Parquet write",
    "project": "the project's read, featurize and write steps (fruits.run.steps: plan, listing, executor-side "
               "read, mapInArrow, features/ rejected/ inventory/ written, counts reconciled, published)",
    "fruits-run": "`fruits run` with its defaults, END TO END (also PCA, the notebook's figures and the HTML "
                  "report): not like for like with the rows above",
}


# ---------------------------------------------------------------- peers, each run in a fresh process


def predict_batch_peer(input_dir: str, output_dir: str, weights: str) -> dict:
    """Spark's ``predict_batch_udf`` with the project's default engine's model; seconds per stage."""
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql.functions import element_at, split
    from pyspark.sql.types import ArrayType, FloatType

    from fruits import engines
    from fruits.featurize.preprocess import decode_and_resize
    from fruits.params import RunParams
    from fruits.spark.session import local_spark

    seconds = {}
    start = time.perf_counter()
    spark = local_spark(MASTER, app_name="peer-predict-batch-udf")
    seconds["session"] = time.perf_counter() - start

    start = time.perf_counter()
    params = RunParams()  # the project's defaults: its engine, image size, network batch size, threads per task
    engine = engines.get(params.engine)
    prepared = engine.prepare(engine.resolve(weights, allow_random=False), input_size=params.image_size)
    model = spark.sparkContext.broadcast(prepared.payload)
    size, threads = params.image_size, params.threads_per_task
    seconds["model"] = time.perf_counter() - start

    def make_predict_fn():
        predict_pixels = engine.build(model.value, threads=threads, input_size=size)  # once per Python worker

        def predict(content: np.ndarray) -> np.ndarray:
            return predict_pixels(np.stack([decode_and_resize(bytes(data), size) for data in content]))

        return predict

    featurize = predict_batch_udf(make_predict_fn, return_type=ArrayType(FloatType()),
                                  batch_size=params.network_batch_size)
    start = time.perf_counter()
    images = (spark.read.format("binaryFile").option("pathGlobFilter", "*.jpg")
              .option("recursiveFileLookup", "true").load(input_dir))
    images = images.withColumn("label", element_at(split(images["path"], "/"), -2))
    spark.sparkContext.setJobGroup("peer", "predict_batch_udf")
    images.select("path", "label", featurize("content").alias("features")).write.parquet(
        os.path.join(output_dir, "features"))
    seconds["read, featurize, write"] = time.perf_counter() - start
    partitions = tasks_of_group(spark, "peer")  # from the finished jobs: asking the DataFrame would plan it again
    spark.stop()
    return {"seconds": seconds, "partitions": partitions, "batch_size": params.network_batch_size,
            "engine": prepared.name, "model_sha256": prepared.sha256,
            "features": os.path.join(output_dir, "features")}


def tasks_of_group(spark, group: str) -> int:
    """Tasks of the largest stage the jobs of ``group`` ran: the featurization's partitions."""
    tracker = spark.sparkContext.statusTracker()
    stages = [tracker.getStageInfo(stage) for job in tracker.getJobIdsForGroup(group)
              for stage in (tracker.getJobInfo(job).stageIds if tracker.getJobInfo(job) else [])]
    return max((stage.numTasks for stage in stages if stage), default=0)


def project_peer(input_dir: str, output_dir: str, weights: str) -> dict:
    """The project's plan, read, featurize and write steps with its defaults, published; seconds per stage."""
    from fruits.params import RunParams
    from fruits.run import steps
    from fruits.run.plan import prepare
    from fruits.spark.session import local_spark
    from fruits.storage.staged import staged_run

    seconds = {}
    start = time.perf_counter()
    prepared = prepare(RunParams(input_path=input_dir, output_dir=output_dir, weights=weights).validate(),
                       master=MASTER)
    seconds["plan (weights, engine)"] = time.perf_counter() - start
    start = time.perf_counter()
    spark = local_spark(MASTER, app_name="peer-project")
    seconds["session"] = time.perf_counter() - start
    try:
        with staged_run(prepared.layout.root, prepared.run_id, lease=prepared.lease,
                        expected=prepared.pointer_token, keep=prepared.params.keep_runs) as staged:
            start = time.perf_counter()
            read = steps.read(spark, prepared, staged.layout)
            seconds["read"] = time.perf_counter() - start
            start = time.perf_counter()
            outcome = steps.featurize(spark, prepared, read, staged.layout)
            seconds["featurize"] = time.perf_counter() - start
            start = time.perf_counter()
            counts, _, _ = steps.write_features(spark, prepared, read, outcome, staged.layout)
            seconds["write"] = time.perf_counter() - start
    finally:
        prepared.release()
    spark.stop()
    return {"seconds": seconds, "partitions": read.partitions, "batch_size": prepared.params.network_batch_size,
            "engine": read.engine.name, "model_sha256": read.engine.sha256, "counts": counts,
            "features": staged.readable.features}


def warm_engine_cache(weights: str) -> None:
    """Convert the default engine's graph once, before any timing, as any earlier run would have."""
    from fruits import engines
    from fruits.params import RunParams

    params = RunParams()
    engine = engines.get(params.engine)
    engine.prepare(engine.resolve(weights, allow_random=False), input_size=params.image_size)


CHILDREN = {"predict_batch_udf": predict_batch_peer, "project": project_peer}


def run_child(peer: str, input_dir: str, scratch: str, weights: str) -> dict:
    """``peer`` in a fresh process of this script: its wall seconds and its own figures."""
    output = tempfile.mkdtemp(prefix=f"{peer}-", dir=scratch)
    result = os.path.join(scratch, f"{peer}.json")
    wall = timed([sys.executable, __file__, "--child", peer, "--input", input_dir, "--output", output,
                  "--weights", weights, "--result", result])
    return {"wall_seconds": wall, "output": output, **json.loads(Path(result).read_text())}


def run_peer(peer: str, input_dir: str, scratch: str, weights: str) -> dict:
    """One peer, timed from its process's start to its exit; ``features`` names the Parquet it wrote."""
    if peer == "study":
        figures = run_study(input_dir, scratch, weights, features_only=True, keep=True)
        figures["features"] = os.path.join(figures["output"], "Results")
        return figures
    if peer == "fruits-run":
        figures = run_fruits(input_dir, scratch, "onnx", [], keep=True)
        figures["features"] = os.path.join(figures["output"], "features")
        figures["output"] = str(Path(figures["output"]).parent.parent)  # the whole output folder, removed later
        return figures
    return run_child(peer, input_dir, scratch, weights)


# ---------------------------------------------------------------- the honesty check


def read_features(parquet: str) -> dict[str, np.ndarray]:
    """``label/file name`` -> features of one peer's Parquet (peers name the same file differently: URI or path)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(parquet.removeprefix("file:"), columns=["path", "features"])
    table = table.filter(pc.is_valid(table.column("features")))  # the project's rejected images have none
    column = table.column("features").combine_chunks()
    flat = np.asarray(column.flatten(), dtype=np.float32)  # not Python floats: the full split is 26 M values
    if len(column) and flat.size % len(column):
        raise ValueError(f"{parquet}: feature vectors of different lengths")
    vectors = flat.reshape(len(column), -1)
    return {"/".join(path.rstrip("/").split("/")[-2:]): vector
            for path, vector in zip(table.column("path").to_pylist(), vectors)}


def agreement(features: dict[str, dict[str, np.ndarray]], reference: str) -> dict:
    """Each peer's features against ``reference``'s, on the images both wrote."""
    base = features[reference]
    out = {}
    for peer, vectors in features.items():
        common = sorted(set(vectors) & set(base))
        if not common:
            out[peer] = {"images": len(vectors), "common": 0}
            continue
        a = np.stack([vectors[key] for key in common]).astype(np.float64)
        b = np.stack([base[key] for key in common]).astype(np.float64)
        cosine = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        out[peer] = {"images": len(vectors), "common": len(common),
                     "only_here": len(set(vectors) - set(base)), "only_in_reference": len(set(base) - set(vectors)),
                     "cosine_min": float(cosine.min()), "cosine_mean": float(cosine.mean()),
                     "max_abs_difference": float(np.abs(a - b).max()),
                     "bit_identical": int(sum(np.array_equal(vectors[key], base[key]) for key in common))}
    return out


# ---------------------------------------------------------------- the report


def git_commit() -> str:
    completed = subprocess.run(["git", "rev-parse", "HEAD"], cwd=HERE, capture_output=True, text=True)
    return completed.stdout.strip() or "unknown"


def report(results: dict, checks: dict, *, reference: str, images: int, source: str, rounds: int,
           out: Path, name: str) -> str:
    study = results.get("study", {}).get("wall_seconds")
    project = results.get("project", {}).get("wall_seconds")
    when = dt.datetime.now(dt.timezone.utc)
    commit = git_commit()
    lines = [f"Peers on {images:,} real Fruits-360 Test images ({source}), {os.cpu_count()} cores, Spark {MASTER}, "
             f"each peer a fresh process timed from start to exit (Python and Spark start included), best of "
             f"{rounds} interleaved round(s); {when:%Y-%m-%d %H:%M} UTC, commit {commit[:12]}.", "",
             "| peer | wall s | images/s | x study | x project |", "|---|---:|---:|---:|---:|"]
    for peer, figures in results.items():
        wall = figures["wall_seconds"]
        figures["images_per_second"] = images / wall
        figures["x_study"] = study / wall if study else None
        figures["x_project"] = project / wall if project else None
        cells = [peer, f"{wall:.1f}", f"{images / wall:.1f}",
                 f"{figures['x_study']:.2f}" if figures["x_study"] else "-",
                 f"{figures['x_project']:.2f}" if figures["x_project"] else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "x study: the study's wall seconds over the peer's (above 1: faster than the study); "
                  "x project: the project's over the peer's (below 1: slower than the project).", ""]
    for peer, figures in results.items():
        own = ", ".join(f"{stage} {seconds:.1f}" for stage, seconds in (figures.get("seconds") or {}).items())
        if peer == "fruits-run":
            own = ", ".join(f"{stage} {seconds:.1f}" for stage, seconds in figures["stages"].items())
        details = [f"walls {', '.join(f'{wall:.1f}' for wall in figures['all_wall_seconds'])} s"]
        if own:
            details.append(f"its own seconds: {own}")
        if figures.get("partitions"):
            details.append(f"{figures['partitions']} partitions")
        if figures.get("batch_size"):
            details.append(f"network batch {figures['batch_size']}")
        if figures.get("engine"):
            details.append(f"engine {figures['engine']} (graph {figures['model_sha256'][:12]})"
                           if figures.get("model_sha256") else f"engine {figures['engine']}")
        lines.append(f"- **{peer}**: {NOTES[peer]}. " + "; ".join(details) + ".")
    lines += ["", f"Same work? Features each peer wrote against `{reference}`'s, image by image:", "",
              "| peer | images written | compared | cosine min | largest 1 - cosine | max abs difference | bit-identical |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for peer, check in checks.items():
        if not check["common"]:
            lines.append(f"| {peer} | {check['images']} | 0 | - | - | - | - |")
            continue
        lines.append(f"| {peer} | {check['images']} | {check['common']} | {check['cosine_min']:.8f} | "
                     f"{1 - check['cosine_min']:.1e} | {check['max_abs_difference']:.2e} | "
                     f"{check['bit_identical']} of {check['common']} |")
    missing = [peer for peer, check in checks.items() if check["images"] != images or check.get("only_in_reference")]
    if missing:
        lines += ["", f"WARNING: {', '.join(missing)} did not write features for every image of the slice."]
    text = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.md").write_text(text)
    (out / f"{name}.json").write_text(json.dumps(
        {"date": when.isoformat(timespec="seconds"), "commit": commit, "cores": os.cpu_count(), "master": MASTER,
         "images": images, "source": source, "rounds": rounds, "reference": reference,
         "results": results, "agreement": checks}, indent=2))
    return text


# ---------------------------------------------------------------- command line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="the whole Test split")
    parser.add_argument("--images", type=int, default=SLICE_IMAGES, help="slice size when not --full")
    parser.add_argument("--peers", nargs="+", choices=PEERS, default=list(PEERS))
    parser.add_argument("--repeat", type=int, default=1, help="interleaved rounds; each peer keeps its best")
    parser.add_argument("--data", default=os.path.join(os.environ.get("FRUITS_TEST_IMAGES", ""), "Test"))
    parser.add_argument("--weights", default=os.environ.get("FRUITS_WEIGHTS"))
    parser.add_argument("--out", default=str(HERE / "results" / "peers"))
    parser.add_argument("--name", help="results file name (default: slice or full)")
    parser.add_argument("--child", choices=[*CHILDREN, "warm"], help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "warm":
        warm_engine_cache(args.weights)
        return 0
    if args.child:
        figures = CHILDREN[args.child](args.input, args.output, args.weights)
        Path(args.result).write_text(json.dumps(figures))
        return 0
    if not args.weights or not os.path.isfile(args.weights) or not os.path.isdir(args.data):
        parser.error("needs --weights (or FRUITS_WEIGHTS) and --data (or FRUITS_TEST_IMAGES with Test/)")
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    weights = os.path.abspath(args.weights)
    os.environ.setdefault("FRUITS_WEIGHTS", weights)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    peers = [peer for peer in PEERS if peer in args.peers]
    reference = "project" if "project" in peers else peers[0]
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="fruits-peers-") as scratch:
        if args.full:
            input_dir = os.path.abspath(args.data)
        else:
            input_dir = os.path.join(scratch, "Test")
            select_images(Path(args.data), Path(input_dir), args.images)
        images = sum(1 for _, _, names in os.walk(input_dir) for name in names if name.lower().endswith(".jpg"))
        print(f"{images} images from {args.data}; peers: {', '.join(peers)}", flush=True)
        timed([sys.executable, __file__, "--child", "warm", "--weights", weights])  # not part of any peer's time
        features: dict = {}
        for round_ in range(args.repeat):
            for peer in peers:  # rounds interleave the peers, so slow spells hit all of them
                figures = run_peer(peer, input_dir, scratch, weights)
                features[peer] = read_features(figures["features"])  # every round writes the same; keep the last
                shutil.rmtree(figures.pop("output"), ignore_errors=True)
                figures.pop("features")
                print(f"{peer:>18}: {figures['wall_seconds']:7.1f} s wall, {images / figures['wall_seconds']:6.1f} "
                      f"images/s (round {round_ + 1})", flush=True)
                keep_best(results, peer, figures)
    checks = agreement(features, reference)
    text = report(results, checks, reference=reference, images=images,
                  source="full Test split" if args.full else f"{images:,}-image Test slice", rounds=args.repeat,
                  out=Path(args.out), name=args.name or ("full" if args.full else "slice"))
    print("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
