"""Where a run's seconds go: each step of the notebook, and each Spark job inside it, from Spark's event log.

``bench/end_to_end.py`` times whole commands; this one opens them up. In one process
it does what the local notebook does, cell by cell (parameters checked, session
started, the run, then every figure and table the report shows), with Spark's event
log on (``spark.eventLog.enabled``: the same record the Spark UI's history reads).
It prints:

* the wall seconds of each notebook step;
* every Spark job: the step it ran in, its description, its wall seconds, its tasks,
  and the executors' own time (``Executor Run Time``, CPU time) summed over tasks;
* what is left of each step outside its Spark jobs (driver Python, planning, I/O on
  the driver).

    python bench/where_time_goes.py                      # 2,040 Test images (17 per class)
    python bench/where_time_goes.py --images 0           # the demo's synthetic images
    python bench/where_time_goes.py --full -p engine onnx-int8

It runs the library, not the CLI: kernel start, papermill and rendering are
``bench/end_to_end.py``'s figures. Results go to ``bench/results/where_time_goes/``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from end_to_end import SLICE_IMAGES, select_slice  # noqa: E402  (bench/ is not a package)


class Steps:
    """Wall seconds of named steps, and their start and end (epoch ms) to place Spark's jobs in them."""

    def __init__(self):
        self.spans: list[tuple[str, float, float]] = []

    @contextlib.contextmanager
    def step(self, name: str):
        start = time.time()
        try:
            yield
        finally:
            self.spans.append((name, start * 1000, time.time() * 1000))

    def of(self, epoch_ms: float) -> str:
        return next((name for name, start, end in self.spans if start <= epoch_ms <= end), "?")


@contextlib.contextmanager
def driver_profile(top: int):
    """With ``--profile N``: the driver's Python functions taking the most cumulative time in the run step."""
    if not top:
        yield
        return
    import cProfile
    import pstats

    profile = cProfile.Profile()
    profile.enable()
    try:
        yield
    finally:
        profile.disable()
        pstats.Stats(profile, stream=sys.stdout).sort_stats("cumulative").print_stats(top)


def run_notebook_steps(args, input_path: str | None, output: str, event_dir: str, steps: Steps) -> dict:
    """The local notebook's cells, in order, through the same library calls (notebooks/shared/body.py)."""
    with steps.step("imports and parameters checked"):
        from fruits.params import RunParams, parse_value
        from fruits.report import display, explore, plots
        from fruits.run.execute import execute
        from fruits.run.plan import prepare

        values = {"input_path": input_path, "output_dir": output, "mode": "overwrite"}
        values.update({name: parse_value(value) for name, value in args.parameter})
        prepared = prepare(RunParams.from_namespace(values), master="local[2]")
    with steps.step("session"):
        from fruits.spark.session import local_spark

        from fruits.spark.settings import DRIVER_MEMORY, LOCAL_MASTER

        spark = local_spark(values.get("master", LOCAL_MASTER), driver_memory=values.get("driver_memory", DRIVER_MEMORY), conf={
            "spark.eventLog.enabled": "true", "spark.eventLog.dir": event_dir}, short_run=prepared.short_run)
    with steps.step("run"), driver_profile(args.profile):
        result = execute(spark, prepared)
    with steps.step("figure: class counts"):
        plots.class_counts(explore.class_counts(spark, result.layout))
    with steps.step("figure: sample grid"):
        from fruits.inputs.listing import spread_sample

        seed = prepared.params.seed
        plots.sample_grid(explore.sample_images(
            spread_sample(spark.read.parquet(result.layout.features), per_label=2, seed=seed), count=16, seed=seed))
    with steps.step("figure: variance curve"):
        plots.variance_curve(result.pca.spectrum, result.pca.k, variance_target=prepared.params.variance_target)
    with steps.step("figure: PCA map"):
        plots.pca_map(explore.pca_points(spark, result.layout, seed=prepared.params.seed))
    with steps.step("figure: nearest neighbours"):
        plots.nearest_neighbours(explore.nearest_neighbours(spark, result.layout, seed=prepared.params.seed))
    with steps.step("evaluation figures"):
        display.evaluation_figure(result.manifest)
        display.per_class_figure(result.manifest)
        display.confusion_figure(spark, result.layout, result.manifest)
    with steps.step("table: rejected"):
        explore.rejected(spark, result.layout, limit=50)
    with steps.step("figure: timings"):
        plots.timings(explore.timings(result.manifest), images_per_second=result.manifest["images_per_second"])
    with steps.step("session stop"):
        spark.stop()
    return result.manifest


def spark_jobs(event_dir: str) -> list[dict]:
    """Every job of the event log: description, start, end, tasks, executor run and CPU time."""
    [log] = glob.glob(os.path.join(event_dir, "*"))
    jobs, stage_job = {}, {}
    with open(log) as handle:
        for line in handle:
            event = json.loads(line)
            kind = event["Event"]
            if kind == "SparkListenerJobStart":
                job = event["Job ID"]
                properties = event.get("Properties") or {}
                stages = event.get("Stage Infos") or [{}]
                # The call site (e.g. "parquet at ...", "collect at ...") tells jobs of one step apart.
                jobs[job] = {"job": job, "start": event["Submission Time"], "tasks": 0, "run_ms": 0, "cpu_ns": 0,
                             "description": properties.get("spark.job.description", ""),
                             "call_site": stages[-1].get("Stage Name", "").split(" at ")[0]}
                for stage in event.get("Stage IDs", []):
                    stage_job[stage] = job
            elif kind == "SparkListenerJobEnd":
                jobs[event["Job ID"]]["end"] = event["Completion Time"]
            elif kind == "SparkListenerTaskEnd":
                job = jobs.get(stage_job.get(event["Stage ID"]))
                metrics = event.get("Task Metrics") or {}
                if job is not None:
                    job["tasks"] += 1
                    job["run_ms"] += metrics.get("Executor Run Time", 0)
                    job["cpu_ns"] += metrics.get("Executor CPU Time", 0)
    return sorted(jobs.values(), key=lambda job: job["start"])


def report(steps: Steps, jobs: list[dict], manifest: dict, *, images: int, source: str, out: Path, name: str) -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True,
                            text=True).stdout.strip()
    lines = [f"Where the seconds go: {images:,} images ({source}), engine {manifest['engine']['name']}, "
             f"{os.cpu_count()} cores, commit {commit}, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC.", "",
             "Manifest stages (s): " + ", ".join(f"{k} {v:.2f}" for k, v in manifest["seconds"].items()), "",
             "| step | wall s | in Spark jobs s | jobs | outside jobs s |", "|---|---:|---:|---:|---:|"]
    for step, start, end in steps.spans:
        inside = [job for job in jobs if steps.of(job["start"]) == step and "end" in job]
        busy = sum(job["end"] - job["start"] for job in inside) / 1000
        lines.append(f"| {step} | {(end - start) / 1000:.2f} | {busy:.2f} | {len(inside)} | "
                     f"{(end - start) / 1000 - busy:.2f} |")
    lines += ["", "Executor run and CPU time are the JVM's task metrics (a Python worker's own CPU is not in them).", "",
              "| job | step | description | call | wall s | tasks | executor run s | executor CPU s |",
              "|---:|---|---|---|---:|---:|---:|---:|"]
    for job in jobs:
        wall = (job.get("end", job["start"]) - job["start"]) / 1000
        lines.append(f"| {job['job']} | {steps.of(job['start'])} | {job['description'][:60]} | {job['call_site']} | {wall:.2f} | "
                     f"{job['tasks']} | {job['run_ms'] / 1000:.2f} | {job['cpu_ns'] / 1e9:.2f} |")
    text = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.md").write_text(text)
    (out / f"{name}.json").write_text(json.dumps({
        "images": images, "source": source, "commit": commit, "manifest_seconds": manifest["seconds"],
        "steps": [{"step": s, "seconds": (e - b) / 1000} for s, b, e in steps.spans], "jobs": jobs}, indent=2))
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=SLICE_IMAGES,
                        help="slice of Test images (0: the demo's synthetic images)")
    parser.add_argument("--full", action="store_true", help="the whole Test split")
    parser.add_argument("--data", default=os.path.join(os.environ.get("FRUITS_TEST_IMAGES", ""), "Test"))
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="print the N driver functions with the most cumulative time in the run step")
    parser.add_argument("--out", default=str(HERE / "results" / "where_time_goes"))
    parser.add_argument("--name", help="results file name (default: slice, demo or full)")
    args = parser.parse_args()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    with tempfile.TemporaryDirectory(prefix="fruits-where-") as scratch:
        if args.full:
            input_path, images, source = args.data, None, "full Test split"
        elif args.images == 0:
            input_path, images, source = None, None, "the demo's synthetic images"
        else:
            input_path = os.path.join(scratch, "Test")
            images = select_slice(Path(args.data), Path(input_path), args.images)
            source = f"{images}-image Test slice"
        event_dir = os.path.join(scratch, "events")
        os.makedirs(event_dir)
        steps = Steps()
        manifest = run_notebook_steps(args, input_path, os.path.join(scratch, "out"), event_dir, steps)
        name = args.name or ("full" if args.full else "demo" if args.images == 0 else "slice")
        print(report(steps, spark_jobs(event_dir), manifest, images=images or manifest["counts"]["input"],
                     source=source, out=Path(args.out), name=name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
