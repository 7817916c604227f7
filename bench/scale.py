"""Driver cost against the number of images: time before featurization starts, and peak memory.

Builds trees of hard links to a few hundred real Fruits-360 JPEGs (hard links cost
an entry each, not the bytes): ``--per-class`` images per class folder (Fruits-360's
own Training folders hold 400-1,000), plus one text file and one 0-byte image at the
top, which the run must report. Then, per size and per code path, in a fresh Python
process with a fresh ``local[2]`` Spark session:

``new``
    what a run does today before its featurization job is submitted:
    :func:`fruits.inputs.listing.check_input` (driver, top level only),
    :func:`~fruits.inputs.listing.list_files` (executors, Parquet snapshot and the
    per-label aggregation), :func:`fruits.inputs.inventory.plan`, and the reading
    plan (:func:`fruits.inputs.reading.read_images`). The ``onnx-int8`` calibration
    choice (:func:`fruits.inputs.calibration.choose_calibration`) is timed after it,
    apart, since only that engine needs it.
``old``
    the former path, taken from git (commit :data:`OLD_COMMIT`): ``list_inputs`` (an
    fsspec ``find`` into a Python list on the driver) and ``read_images`` (that list
    as a DataFrame, ``binaryFile`` listing the folder again, a broadcast join, the
    anti-join collected).

Figures per run: seconds from the start of the input work to the point where the
featurization would be submitted (Spark's start is measured apart), and the driver
Python process's peak resident memory (``ru_maxrss``), with its value right after
the session started. The driver JVM's memory is not the Python process's; its
resident size at the end is recorded too (not a peak).

Constant costs a run adds whatever the size (engine preparation, output checks,
lease) are left out. The machine is shared (2 cores, other engineers' tests): quote
the figures with that caveat; they move with its load.

    python bench/scale.py                           # 100,000 then 1,000,000 images, both paths
    python bench/scale.py --sizes 100000 --paths new
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "scale"

#: The last commit holding the former driver-side listing and reading (fruits.listing, fruits.loading).
OLD_COMMIT = "347bd1c"

#: Real JPEGs the trees link to.
POOL_SIZE = 400

#: Files the run must report besides the images (names relative to the tree's root).
EXTRA_FILES = {"README.txt": b"not an image\n", "empty.jpg": b""}


def build_pool(source: Path, pool: Path) -> list[Path]:
    """Copy :data:`POOL_SIZE` JPEGs, spread over the classes of ``source``, into ``pool`` (once)."""
    if pool.is_dir() and len(list(pool.iterdir())) >= POOL_SIZE:
        return sorted(pool.iterdir())
    pool.mkdir(parents=True, exist_ok=True)
    folders = sorted(p for p in source.iterdir() if p.is_dir())
    per_folder = -(-POOL_SIZE // len(folders))
    copied = 0
    for folder in folders:
        for image in sorted(folder.glob("*.jpg"))[:per_folder]:
            if copied == POOL_SIZE:
                break
            shutil.copyfile(image, pool / f"{copied:04d}.jpg")
            copied += 1
    return sorted(pool.iterdir())


def build_tree(pool: list[Path], tree: Path, *, images: int, per_class: int) -> float:
    """Hard-link ``images`` pool files into class folders of ``per_class``; returns the seconds taken."""
    start = time.perf_counter()
    if tree.exists():
        shutil.rmtree(tree)
    for index in range(images):
        folder = tree / f"class-{index // per_class:05d}"
        if index % per_class == 0:
            folder.mkdir(parents=True)
        os.link(pool[index % len(pool)], folder / f"{index:08d}.jpg")
    for name, content in EXTRA_FILES.items():
        (tree / name).write_bytes(content)
    return time.perf_counter() - start


def old_modules(scratch: Path) -> Path:
    """Write the former ``fruits.listing`` and ``fruits.loading`` from git as importable ``old_*`` modules."""
    folder = scratch / "old"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("listing", "loading"):
        text = subprocess.run(["git", "show", f"{OLD_COMMIT}:lib/fruits/{name}.py"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout
        (folder / f"old_{name}.py").write_text(text.replace("from fruits.listing import", "from old_listing import"))
    return folder


def child(path: str, tree: str, scratch: str) -> dict:
    """One measurement, in this (fresh) process: Spark's start, then the input work up to featurization."""
    from fruits.spark.session import local_spark

    start = time.perf_counter()
    spark = local_spark("local[2]", app_name=f"bench-scale-{path}", driver_memory="2g")
    spark.range(1).count()  # the session is up, executors included
    session_seconds = time.perf_counter() - start
    rss_after_session = _maxrss_mb()
    figures: dict = {}
    start = time.perf_counter()
    if path == "new":
        from fruits.featurize.step import choose_partitions
        from fruits import engines
        from fruits.inputs import calibration, inventory
        from fruits.inputs.listing import check_input, list_files
        from fruits.inputs.reading import read_images

        source = check_input(tree)
        figures["driver_check_seconds"] = round(time.perf_counter() - start, 3)
        listing = list_files(spark, source, os.path.join(scratch, "listing"))
        increment = inventory.plan(listing, None, None)
        partitions = choose_partitions(spark, increment.to_process_count, None)
        read_images(increment.to_process, partitions=partitions)
        seconds = time.perf_counter() - start
        figures.update(files=listing.total, images=listing.image_count, skipped=listing.skipped_count,
                       classes=len(listing.classes), partitions=partitions)
        rss_before_calibration = _maxrss_mb()
        started = time.perf_counter()
        chosen = calibration.choose_calibration(listing.images(), count=engines.get("onnx-int8").calibration_images)
        figures.update(int8_calibration_seconds=round(time.perf_counter() - started, 3),
                       int8_calibration_images=len(chosen),
                       peak_rss_mb_before_calibration=round(rss_before_calibration, 1))
    else:
        sys.path.insert(0, os.path.join(scratch, "old"))
        from old_listing import list_inputs
        from old_loading import read_images as old_read_images

        listing = list_inputs(tree)
        figures["driver_listing_seconds"] = round(time.perf_counter() - start, 3)
        _, not_read = old_read_images(spark, listing.root, listing.images)
        seconds = time.perf_counter() - start
        figures.update(files=listing.total, images=len(listing.images), skipped=len(listing.skipped),
                       classes=len(listing.labels()), not_read=len(not_read))
    figures.update(path=path, seconds_before_featurization=round(seconds, 3),
                   session_seconds=round(session_seconds, 3), peak_rss_mb=round(_maxrss_mb(), 1),
                   rss_mb_after_session=round(rss_after_session, 1), jvm_rss_mb_at_end=_jvm_rss_mb())
    spark.stop()
    return figures


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def _jvm_rss_mb() -> float | None:
    """Resident size of this process's Java child (the driver JVM), now."""
    try:
        import psutil
    except ImportError:
        return None
    for process in psutil.Process().children(recursive=True):
        if "java" in process.name().lower():
            return round(process.memory_info().rss / 2**20, 1)
    return None


def run_child(path: str, tree: Path, scratch: Path) -> dict:
    result = scratch / f"result-{path}.json"
    completed = subprocess.run(
        [sys.executable, __file__, "--child", path, "--tree", str(tree), "--scratch", str(scratch),
         "--result", str(result)],
        cwd=ROOT, capture_output=True, text=True, timeout=3600,
        env={**os.environ, "SPARK_LOCAL_IP": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1")})
    if completed.returncode != 0:
        raise RuntimeError(f"{path} failed:\n{completed.stderr[-4000:]}")
    return json.loads(result.read_text())


def table(rows: list[dict]) -> str:
    lines = ["| images | path | before featurization (s) | driver Python peak (MB) | after session (MB) | "
             "int8 calibration choice (s) |", "|---:|---|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['images']:,} | {row['path']} | {row['seconds_before_featurization']:.1f} | "
                     f"{row['peak_rss_mb']:.0f} | {row['rss_mb_after_session']:.0f} | "
                     f"{row.get('int8_calibration_seconds', '-')} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--per-class", type=int, default=1_000, help="images per class folder")
    parser.add_argument("--paths", nargs="+", choices=("new", "old"), default=["new", "old"])
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "fruits-scale"),
                        help="scratch folder outside the repository (trees, pool); the trees are removed")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--tree", help=argparse.SUPPRESS)
    parser.add_argument("--scratch", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        Path(args.result).write_text(json.dumps(child(args.child, args.tree, args.scratch)))
        return 0
    source = os.environ.get("FRUITS_TEST_IMAGES")
    if not source or not Path(source, "Test").is_dir():
        parser.error("set FRUITS_TEST_IMAGES to the Fruits-360 folder holding Test/")
    work = Path(args.work)
    pool = build_pool(Path(source, "Test"), work / "pool")
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.sizes:
        tree = work / f"tree-{size}"
        scratch = Path(tempfile.mkdtemp(prefix=f"scale-{size}-", dir=work))
        try:
            link_seconds = build_tree(pool, tree, images=size, per_class=args.per_class)
            print(f"{size:,} images: tree of hard links built in {link_seconds:.0f} s", flush=True)
            if "old" in args.paths:
                old_modules(scratch)
            for path in args.paths:
                figures = run_child(path, tree, scratch)
                assert figures["images"] == size and figures["files"] == size + len(EXTRA_FILES), figures
                figures.update(images_in_tree=size, per_class=args.per_class, machine=_machine())
                rows.append(figures)
                print(f"  {path}: {figures['seconds_before_featurization']:.1f} s before featurization, "
                      f"driver Python peak {figures['peak_rss_mb']:.0f} MB", flush=True)
                (RESULTS / f"scale-{size}-{path}.json").write_text(json.dumps(figures, indent=2) + "\n")
        finally:
            shutil.rmtree(tree, ignore_errors=True)
            shutil.rmtree(scratch, ignore_errors=True)
    print(table(rows))
    every = sorted((json.loads(path.read_text()) for path in RESULTS.glob("scale-*.json")),
                   key=lambda row: (row["images"], row["path"]))
    (RESULTS / "table.md").write_text(
        "Driver cost before featurization, local[2] on the shared 2-core machine (its load average "
        "is in each JSON file).\n\n" + table(every) + "\n")
    return 0


def _machine() -> dict:
    load = os.getloadavg()
    return {"cpus": os.cpu_count(), "load_average_1m": round(load[0], 2),
            "note": "2 cores shared with other engineers' tests: figures move with the load"}


if __name__ == "__main__":
    sys.exit(main())
