"""The inputs package in Spark: reading from the listing's rows, incremental joins, int8 calibration, S3."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fruits.inputs import calibration, inventory
from fruits.inputs.listing import check_input, list_files
from fruits.inputs.reading import NOT_READ, read_images
from fruits.engines.onnx_int8 import choose_calibration

ROOT = Path(__file__).resolve().parents[1]


def _tree(root: Path, names: dict[str, bytes]) -> Path:
    for name, content in names.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return root


def test_images_are_read_from_the_listing_rows_and_a_vanished_one_gets_a_reason(spark, tmp_path):
    root = _tree(tmp_path / "in", {f"K{k}/{i}.jpg": f"bytes {k} {i}".encode() for k in range(3) for i in range(7)})
    listing = list_files(spark, check_input(str(root)), str(tmp_path / "listing"))
    (root / "K1" / "3.jpg").unlink()  # gone between the listing and the reading
    images = read_images(listing.images(), partitions=5)
    assert images.rdd.getNumPartitions() == 5
    rows = {row.path: row for row in images.collect()}
    assert len(rows) == 21
    gone = rows.pop(str(root / "K1" / "3.jpg"))
    assert gone.content is None and gone.read_error.startswith(f"{NOT_READ}: FileNotFoundError")
    for path, row in rows.items():
        assert row.read_error is None and bytes(row.content) == Path(path).read_bytes()
        assert row.label == Path(path).parent.name


def test_reading_shuffles_paths_not_bytes(spark, tmp_path):
    root = _tree(tmp_path / "in", {f"K/{i}.jpg": b"x" * 100 for i in range(4)})
    listing = list_files(spark, check_input(str(root)), str(tmp_path / "listing"))
    plan = read_images(listing.images(), partitions=3)._jdf.queryExecution().executedPlan().toString()
    exchange, read = plan.index("Exchange"), plan.index("MapInPandas")
    assert read < exchange, f"the bytes are read after (above) the only shuffle:\n{plan}"
    assert plan.count("Exchange") == 1, plan


def test_incremental_plan_compares_inventories_by_joins(spark, tmp_path):
    root = _tree(tmp_path / "in", {f"K/{i}.jpg": b"old" for i in range(6)})
    first = list_files(spark, check_input(str(root)), str(tmp_path / "first"))
    inventory.inventory(first, spark.createDataFrame([(str(root / "K/5.jpg"),)], "path string")) \
        .write.parquet(str(tmp_path / "inventory"))  # 5.jpg was not read by that run: retried now
    (root / "K" / "0.jpg").unlink()
    (root / "K" / "1.jpg").write_bytes(b"changed size")
    _tree(root, {"K/new.jpg": b"new"})
    second = list_files(spark, check_input(str(root)), str(tmp_path / "second"))
    increment = inventory.plan(second, {"run_id": "before"}, str(tmp_path / "inventory"))
    assert increment.is_incremental
    assert {Path(r.path).name for r in increment.unchanged.collect()} == {"2.jpg", "3.jpg", "4.jpg"}
    assert {Path(r.path).name for r in increment.to_process.collect()} == {"1.jpg", "5.jpg", "new.jpg"}
    assert (increment.carried_over, increment.to_process_count, increment.removed) == (3, 3, 1)
    previous = spark.createDataFrame([(str(root / f"K/{i}.jpg"), "x") for i in range(6)], "path string, reason string")
    previous.write.parquet(str(tmp_path / "rejected"))
    kept = inventory.carried_over(spark, str(tmp_path / "rejected"), increment.unchanged)
    assert sorted(Path(r.path).name for r in kept.collect()) == ["2.jpg", "3.jpg", "4.jpg"]
    fresh = inventory.plan(second, None, None)
    assert not fresh.is_incremental and fresh.to_process_count == 6 and fresh.to_process.count() == 6


@pytest.mark.parametrize("total,count", [(1, 100), (7, 100), (250, 100), (1003, 100), (1003, 7)])
def test_calibration_chosen_in_spark_equals_the_engine_rule(spark, total, count):
    # Unicode and case make sure Spark's order is Python's (code points), not a collation.
    names = [f"/in/{'ÄBaäé'[i % 5]}{'KkZ'[i % 3]}/{(i * 7919) % 10007}-ça.jpg" for i in range(total)]
    frame = spark.createDataFrame([(name,) for name in names], "path string").repartition(6)
    chosen = calibration.choose_calibration(frame, count=count)
    assert chosen == choose_calibration(names, count=count)
    assert len(chosen) == min(total, count)


def test_calibration_needs_an_image(spark):
    with pytest.raises(ValueError, match="needs at least one image"):
        calibration.choose_calibration(spark.createDataFrame([], "path string"), count=100)
    with pytest.raises(ValueError, match="count must be a positive integer, got 0"):
        calibration.spaced_indices(5, 0)


S3_INPUTS = textwrap.dedent("""
    import json, sys
    from fruits.inputs.calibration import choose_calibration
    from fruits.inputs.listing import check_input, list_files
    from fruits.inputs.reading import read_images
    from fruits.spark.session import local_spark

    spark = local_spark("local[2]", driver_memory="1g")
    # This Spark has no S3 connector: the executors list and read through s3fs.
    listing = list_files(spark, check_input(sys.argv[1]), sys.argv[2])
    rows = read_images(listing.images(), partitions=3).collect()
    print(json.dumps({
        "total": listing.total, "classes": listing.classes,
        "skipped": sorted([r.path, r.reason] for r in listing.skipped().collect()),
        "read": sorted([r.path, r.label, len(r.content)] for r in rows if r.content is not None),
        "calibration": list(choose_calibration(listing.images(), count=2)),
    }))
""")


@pytest.mark.spark
def test_s3_input_is_listed_and_read_by_the_executors_through_s3fs(tmp_path):
    """On a moto server: the same rows as a local folder, paths keep ``s3://``, 0-byte and hidden files reported."""
    import boto3

    from tests.conftest import moto_server

    with moto_server():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="fruits-inputs", CreateBucketConfiguration={"LocationConstraint": "eu-west-3"})
        for key, body in {"in/Kiwi/a.jpg": b"aaaa", "in/Kiwi/b.png": b"bb", "in/Lime/c.jpg": b"c",
                          "in/Lime/.DS_Store": b"d", "in/Lime/zero.jpg": b"", "in/loose.JPG": b"ee"}.items():
            s3.put_object(Bucket="fruits-inputs", Key=key, Body=body)
        completed = subprocess.run([sys.executable, "-c", S3_INPUTS, "s3://fruits-inputs/in", str(tmp_path / "listing")],
                                   capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    seen = json.loads(completed.stdout.strip().splitlines()[-1])
    prefix = "s3://fruits-inputs/in"
    assert seen["total"] == 6 and seen["classes"] == {"Kiwi": 2, "Lime": 1, "unlabelled": 1}
    assert seen["skipped"] == [[f"{prefix}/Lime/.DS_Store", "hidden or system file (name starts with '.' or '_')"],
                               [f"{prefix}/Lime/zero.jpg", "empty file (0 bytes)"]]
    assert seen["read"] == [[f"{prefix}/Kiwi/a.jpg", "Kiwi", 4], [f"{prefix}/Kiwi/b.png", "Kiwi", 2],
                            [f"{prefix}/Lime/c.jpg", "Lime", 1], [f"{prefix}/loose.JPG", "unlabelled", 2]]
    assert seen["calibration"] == list(choose_calibration([row[0] for row in seen["read"]], count=2))


def test_a_run_records_an_image_that_vanished_after_the_listing_and_retries_it_next_time(spark, tmp_path,
                                                                                         monkeypatch):
    """The file is in the listing snapshot, gone when the executors read it: rejected with the reason, counted."""
    from fruits.run.demo_data import generate_demo_images
    from fruits.params import RunParams
    from fruits.run.execute import execute
    from fruits.run.plan import prepare
    from fruits.run import steps

    images = generate_demo_images(tmp_path / "images", per_class=3, seed=6)
    victim = sorted(images.glob("Synthetic Kiwi/*.jpg"))[0]
    listed = steps.list_files

    def list_then_remove(*args, **kwargs):
        listing = listed(*args, **kwargs)
        victim.rename(tmp_path / "away.jpg")  # after the snapshot, before any image is read
        return listing

    monkeypatch.setattr(steps, "list_files", list_then_remove)
    params = RunParams(input_path=str(images), output_dir=str(tmp_path / "out"), weights="random", k=3)
    result = execute(spark, prepare(params))
    counts = result.manifest["counts"]
    assert counts == {"input": 19, "images": 18, "featurized": 17, "rejected": 2, "featurized_this_run": 17}
    rejected = {row.path: row.reason for row in spark.read.parquet(result.layout.rejected).collect()}
    assert rejected[str(victim)].startswith(f"{NOT_READ}: FileNotFoundError")
    assert result.manifest["rejected_by_reason"][NOT_READ] == 1
    assert result.manifest["classes"]["Synthetic Kiwi"] == 3, "classes count the listing's images"
    inventoried = {row.path for row in spark.read.parquet(result.layout.inventory).collect()}
    assert str(victim) not in inventoried and len(inventoried) == 17

    monkeypatch.setattr(steps, "list_files", listed)
    (tmp_path / "away.jpg").rename(victim)
    again = execute(spark, prepare(RunParams(**{**params.to_dict(), "mode": "incremental"})))
    assert again.manifest["counts"]["featurized_this_run"] == 1 and again.manifest["counts"]["featurized"] == 18
    assert again.manifest["incremental"]["carried_over"] == 17


def test_a_run_over_no_readable_image_is_refused_before_featurization(spark, tmp_path, monkeypatch):
    """The driver cannot know before Spark lists: the listing refuses, with the message, before any image is read."""
    from fruits.params import RunParams
    from fruits.run.execute import execute
    from fruits.run.plan import prepare
    from fruits.run import steps
    from fruits.inputs.listing import InputError
    from fruits.storage.layout import holds_run

    (tmp_path / "docs" / "Kiwi").mkdir(parents=True)
    (tmp_path / "docs" / "Kiwi" / "notes.txt").write_text("no image here")

    def no_featurization(*args, **kwargs):
        raise AssertionError("featurization must not start")

    monkeypatch.setattr(steps, "featurize_and_split", no_featurization)
    prepared = prepare(RunParams(input_path=str(tmp_path / "docs"), output_dir=str(tmp_path / "out"),
                                 weights="random", k=3))
    with pytest.raises(InputError, match=r"holds 1 file\(s\) but no readable image .*; first: .*notes.txt "
                                         r"\(not an image file name"):
        execute(spark, prepared)
    out = tmp_path / "out"
    assert not (out / ".lease.json").exists(), "the lease is released"
    assert not holds_run(str(out)) and not list(out.glob(".staging-*")), "nothing published, no staging left"
