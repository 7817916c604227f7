"""Bad input, failed and interrupted runs, killed workers, incremental runs (plumbing weights)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fruits.run import steps as run_steps
from fruits.run.demo_data import generate_demo_images
from fruits.storage.layout import current_run
from fruits.inputs.listing import UNLABELLED
from fruits.params import RunParams
from fruits.run.execute import execute
from fruits.run.plan import prepare

ROOT = Path(__file__).resolve().parents[1]


def save(path: Path, image: Image.Image, fmt: str, **options) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt, **options)


def photo(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def bad_input_corpus(root: Path) -> tuple[dict, dict]:
    """Every awkward input kind; returns expected labels of featurized files and reasons of rejected ones."""
    save(root / "Apple" / "alpha.png", Image.new("RGBA", (100, 100), (200, 0, 0, 128)), "PNG")
    save(root / "Apple" / "grey.jpg", Image.new("L", (100, 100), 90), "JPEG")
    save(root / "Apple" / "cmyk.jpg", Image.new("CMYK", (100, 100), (0, 200, 200, 0)), "JPEG")
    save(root / "Apple" / "sixteen.png", Image.fromarray(np.full((100, 100), 40000, np.uint16)), "PNG")
    save(root / "Apple" / "palette.png", Image.new("P", (100, 100), 5), "GIF")  # a GIF named .png
    save(root / "Big" / "photo.jpg", photo(4000, 3000, 1), "JPEG", quality=70)  # 12 MP: ordinary
    save(root / "Big" / "bomb.png", Image.new("1", (10000, 10000)), "PNG")  # 100 MP in a few kB
    save(root / "Kiwi" / "deeper" / "nested.jpg", photo(100, 100, 2), "JPEG")
    save(root / "Pomme d'été rouge" / "ça va.jpg", photo(100, 100, 3), "JPEG")
    save(root / "loose.jpg", photo(100, 100, 4), "JPEG")
    buffer = io.BytesIO()
    photo(100, 100, 5).save(buffer, format="JPEG")
    (root / "Kiwi" / "truncated.jpg").write_bytes(buffer.getvalue()[:700])
    (root / "Kiwi" / "zero.jpg").write_bytes(b"")
    (root / "Kiwi" / "notes.jpg").write_text("this is a text file named .jpg")
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "Kiwi" / "._nested.jpg").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    featurized = {"alpha.png": "Apple", "grey.jpg": "Apple", "cmyk.jpg": "Apple", "sixteen.png": "Apple",
                  "palette.png": "Apple", "photo.jpg": "Big", "nested.jpg": "deeper",
                  "ça va.jpg": "Pomme d'été rouge", "loose.jpg": UNLABELLED}
    rejected = {"bomb.png": "image too large", "truncated.jpg": "corrupt or truncated image",
                "zero.jpg": "empty file (0 bytes)", "notes.jpg": "not a recognised image format",
                ".DS_Store": "hidden or system file", "._nested.jpg": "hidden or system file"}
    return featurized, rejected


def test_every_bad_input_kind_is_featurized_or_rejected_with_exact_counts(spark, tmp_path):
    expected_features, expected_rejections = bad_input_corpus(tmp_path / "corpus")
    params = RunParams(input_path=str(tmp_path / "corpus"), output_dir=str(tmp_path / "out"),
                       weights="random", k=3)
    result = execute(spark, prepare(params))
    features = spark.read.parquet(result.layout.features).collect()
    assert {row.path.rsplit("/", 1)[1]: row.label for row in features} == expected_features
    rejected = {row.path.rsplit("/", 1)[1]: row.reason for row in spark.read.parquet(result.layout.rejected).collect()}
    assert set(rejected) == set(expected_rejections)
    for name, reason in expected_rejections.items():
        assert rejected[name].startswith(reason), (name, rejected[name])
    counts = result.manifest["counts"]
    assert counts["input"] == 15 == counts["featurized"] + counts["rejected"]
    assert counts["featurized"] == 9 and counts["rejected"] == 6


@pytest.fixture
def first_run(spark, tmp_path):
    images = generate_demo_images(tmp_path / "images", per_class=4, seed=3)
    params = RunParams(input_path=str(images), output_dir=str(tmp_path / "out"), weights="random", k=4)
    result = execute(spark, prepare(params))
    return params, result


def snapshot(spark, out: Path) -> tuple[dict, list]:
    run = Path(current_run(str(out)))
    manifest = json.loads((run / "manifest.json").read_text())
    rows = sorted((r.path, tuple(r.features)) for r in spark.read.parquet(str(run / "features")).collect())
    return manifest, rows


def test_failed_run_leaves_previous_results_intact(spark, first_run, monkeypatch):
    params, result = first_run
    out = Path(result.prepared.layout.root)
    before = snapshot(spark, out)

    def broken_pca(*args, **kwargs):
        raise RuntimeError("simulated failure after featurization")

    monkeypatch.setattr(run_steps, "fit_pca", broken_pca)
    again = RunParams(**{**params.to_dict(), "mode": "overwrite", "seed": 9})
    with pytest.raises(RuntimeError, match="simulated failure"):
        execute(spark, prepare(again))
    assert snapshot(spark, out) == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "no staging left behind"


INTERRUPTED_RUN = textwrap.dedent("""
    import sys, time
    import fruits.featurize.batches
    from fruits.params import RunParams
    from fruits.run.execute import execute
    from fruits.run.plan import prepare
    from fruits.spark.session import local_spark

    def stalled(*args, **kwargs):
        time.sleep(600)

    fruits.featurize.batches.featurize_contents = stalled  # shipped by value with the UDF's closure
    params = RunParams(input_path=sys.argv[1], output_dir=sys.argv[2], weights="random", k=4, mode="overwrite")
    execute(local_spark("local[2]", driver_memory="1g"), prepare(params))
""")


def test_killed_run_leaves_previous_results_intact_and_is_cleaned_up_next_time(spark, first_run):
    params, result = first_run
    out = Path(result.prepared.layout.root)
    before = snapshot(spark, out)
    process = subprocess.Popen([sys.executable, "-c", INTERRUPTED_RUN, params.input_path, str(out)],
                               start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        while not list(out.glob(".staging-*/_staging/raw/_temporary")):  # the featurization is writing
            assert time.time() < deadline and process.poll() is None, "run never reached featurization"
            time.sleep(0.5)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert snapshot(spark, out) == before, "a killed run must not touch the published results"
    assert list(out.glob(".staging-*"))
    assert (out / ".lease.json").exists(), "a crashed run cannot release its lease"
    rerun = execute(spark, prepare(RunParams(**{**params.to_dict(), "mode": "overwrite"})))
    assert rerun.manifest["counts"]["featurized"] == 24
    assert not list(out.glob(".staging-*")) and not list(out.glob(".previous-*"))
    assert not (out / ".lease.json").exists()
    assert current_run(str(out)) == rerun.layout.root


WORKER_KILLED_ONCE = textwrap.dedent("""
    import json, os, sys
    import fruits.featurize.batches
    from fruits.params import RunParams
    from fruits.run.execute import execute
    from fruits.run.plan import prepare
    from fruits.spark.session import local_spark

    original = fruits.featurize.batches.featurize_contents
    marker = sys.argv[3]

    def dies_once(contents, predict, **kwargs):
        if not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)  # the Python worker dies in the middle of a task
        return original(contents, predict, **kwargs)

    fruits.featurize.batches.featurize_contents = dies_once
    params = RunParams(input_path=sys.argv[1], output_dir=sys.argv[2], weights="random", k=4, partitions=6)
    result = execute(local_spark("local[2,3]", driver_memory="1g"), prepare(params))
    print(json.dumps(result.manifest["counts"]))
""")


def test_a_worker_dying_mid_run_leaves_no_duplicate_and_no_missing_row(spark, tmp_path):
    images = generate_demo_images(tmp_path / "images", per_class=8, seed=4)
    out, marker = tmp_path / "out", tmp_path / "died"
    completed = subprocess.run(
        [sys.executable, "-c", WORKER_KILLED_ONCE, str(images), str(out), str(marker)],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert marker.exists(), "the fault was injected"
    paths = [row.path for row in spark.read.parquet(current_run(str(out)) + "/features").collect()]
    assert len(paths) == len(set(paths)) == 48
    assert json.loads(completed.stdout.strip().splitlines()[-1])["featurized"] == 48


def test_incremental_run_featurizes_only_the_new_images(spark, first_run, tmp_path):
    params, result = first_run
    out, images = Path(result.prepared.layout.root), Path(params.input_path)
    extra = generate_demo_images(tmp_path / "extra", per_class=17, seed=11)  # 102 new images
    moved = 0
    for source in sorted(extra.glob("*/*.jpg"))[:100]:
        target = images / source.parent.name / f"new_{source.name}"
        source.rename(target)
        moved += 1
    assert moved == 100
    grown = execute(spark, prepare(RunParams(**{**params.to_dict(), "mode": "incremental"})))
    manifest = grown.manifest
    assert manifest["counts"]["featurized_this_run"] == 100
    assert manifest["counts"]["featurized"] == 124
    assert manifest["incremental"]["carried_over"] == 24 and manifest["mode"] == "incremental"
    assert manifest["pca_fit"] == "refit"
    refit = pca_by_path(spark, current_run(str(out)))

    same = execute(spark, prepare(RunParams(**{**params.to_dict(), "mode": "incremental", "pca": "reuse"})))
    assert same.manifest["counts"]["featurized_this_run"] == 0
    assert same.manifest["pca_fit"] == "reused"
    rows = pca_by_path(spark, current_run(str(out)))
    assert_same_pca(rows, refit, expected_rows=124)

    first = sorted(images.glob("Synthetic Kiwi/*.jpg"))[0]
    first.unlink()
    shrunk = execute(spark, prepare(RunParams(**{**params.to_dict(), "mode": "incremental", "pca": "reuse"})))
    assert shrunk.manifest["incremental"]["removed_since_previous"] == 1
    assert shrunk.manifest["counts"]["featurized"] == 123
    assert shrunk.manifest["k"] == result.manifest["k"]
    rows = pca_by_path(spark, current_run(str(out)))
    (removed,) = refit.keys() - rows.keys()
    assert removed.endswith(f"/{first.parent.name}/{first.name}"), removed
    assert_same_pca(rows, {path: refit[path] for path in rows}, expected_rows=123)


def pca_by_path(spark, run: str) -> dict[str, np.ndarray]:
    return {r.path: np.asarray(r.pca_features, dtype=np.float64) for r in spark.read.parquet(run + "/pca").collect()}


def assert_same_pca(rows: dict, earlier: dict, *, expected_rows: int) -> None:
    """Under ``pca reuse`` every earlier row keeps its PCA features: same paths, same numbers."""
    assert len(rows) == expected_rows and rows.keys() == earlier.keys()
    for path, features in earlier.items():
        np.testing.assert_allclose(rows[path], features, rtol=0, atol=1e-6, err_msg=path)


def test_incremental_refuses_other_weights(first_run):
    params, _ = first_run
    with pytest.raises(ValueError, match="same engine, weights and image_size"):
        prepare(RunParams(**{**params.to_dict(), "mode": "incremental", "seed": 5}))


def test_pca_reuse_needs_an_incremental_run():
    with pytest.raises(ValueError, match="^pca must be 'refit' unless mode is 'incremental'"):
        RunParams(pca="reuse").validate()
