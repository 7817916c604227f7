"""The short-run JIT: a run's session start and ``execute`` with the JVM's default compilers and with C1 only.

``fruits.spark.settings.SHORT_RUN_JAVA_OPTIONS`` (``-XX:TieredStopAtLevel=1``) is given
to a local session's JVM when the run is short (``PreparedRun.short_run``: fewer than
``SHORT_RUN_MAX_FILES`` local files). This measures both JVMs on the same images, each
round a fresh process per side, the sides interleaved, and prints seconds per round and
the ratio of the means; it is what placed the threshold between the sizes measured.

    python bench/short_run_jit.py                   # the demo's synthetic images
    python bench/short_run_jit.py --images 2040     # a slice of FRUITS_TEST_IMAGES/Test
    python bench/short_run_jit.py --full --rounds 2 # the whole Test split (about 9 min a round here)

Each side runs what the local notebook runs up to its report: ``prepare``, the session,
``execute`` (figures, kernel and rendering are ``bench/end_to_end.py``'s). Results are
appended to ``bench/results/jit/<name>.txt``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from end_to_end import select_slice  # noqa: E402  (bench/ is not a package)

#: One side of a round, in a fresh interpreter: argv[1] is the input (or ""), argv[2] "short" or "tiered".
_CHILD = r"""
import json, sys, tempfile, time
from fruits.params import RunParams
from fruits.run.execute import execute
from fruits.run.plan import prepare
from fruits.spark.session import local_spark, runs_short_run_jvm

prepared = prepare(RunParams.from_namespace({"input_path": sys.argv[1] or None, "output_dir": tempfile.mkdtemp(),
                                             "mode": "overwrite"}), master="local[2]")
start = time.perf_counter()
spark = local_spark("local[2]", short_run=sys.argv[2] == "short")
session = time.perf_counter() - start
result = execute(spark, prepared)
total = time.perf_counter() - start
c1_only = runs_short_run_jvm(spark)
spark.stop()
print(json.dumps({"session": session, "total": total, "stages": result.manifest["seconds"],
                  "images": result.manifest["counts"]["images"], "c1_only": c1_only,
                  "short_run": prepared.short_run}))
"""


def run_side(input_dir: str, side: str) -> dict:
    done = subprocess.run([sys.executable, "-c", _CHILD, input_dir, side], capture_output=True, text=True,
                          timeout=3600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{side} run failed:\n{done.stderr[-3000:]}")
    figures = json.loads(lines[-1])
    if figures["c1_only"] != (side == "short"):
        raise RuntimeError(f"{side} run: its JVM options say c1_only={figures['c1_only']}")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=0, help="slice size (0: the demo's synthetic images)")
    parser.add_argument("--full", action="store_true", help="the whole Test split")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", default=os.path.join(os.environ.get("FRUITS_TEST_IMAGES", ""), "Test"))
    parser.add_argument("--out", default=str(HERE / "results" / "jit"))
    parser.add_argument("--name", default="runs")
    args = parser.parse_args()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    lines = []

    def say(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True,
                            text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="fruits-jit-") as scratch:
        if args.full:
            input_dir, what = args.data, "the whole Test split"
        elif args.images:
            input_dir = os.path.join(scratch, "Test")
            what = f"a {select_slice(Path(args.data), Path(input_dir), args.images)}-image slice"
        else:
            input_dir, what = "", "the demo's synthetic images"
        say(f"{what}; {os.cpu_count()} cores; commit {commit}; {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC")
        totals: dict[str, list[float]] = {"tiered": [], "short": []}
        for round_ in range(1, args.rounds + 1):
            for side in ("tiered", "short"):
                figures = run_side(input_dir, side)
                totals[side].append(figures["total"])
                stages = ", ".join(f"{name} {value:.1f}" for name, value in figures["stages"].items())
                say(f"round {round_} {side:>6}: {figures['total']:6.1f} s (session {figures['session']:.1f}; {stages}); "
                    f"{figures['images']} images, prepare said short_run={figures['short_run']}")
    means = {side: sum(values) / len(values) for side, values in totals.items()}
    say(f"mean: tiered {means['tiered']:.1f} s, C1 only {means['short']:.1f} s; "
        f"C1 only / tiered = {means['short'] / means['tiered']:.3f}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"{args.name}.txt", "a") as handle:
        handle.write("\n".join(lines) + "\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
