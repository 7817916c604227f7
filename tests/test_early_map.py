"""The report's interactive map built while the notebook still runs (fruits.report.early_map).

A run folder here is what a run publishes for the map to read: ``pca/`` (Parquet with
``path``, ``label``, ``pca_features``) and ``manifest.json``, written into a staging folder
that then takes the run's name, as :mod:`fruits.storage.staged` does.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fruits.report.early_map import EarlyMap, build_map
from fruits.run.demo_data import generate_demo_images

pytest.importorskip("plotly")


def _publish(images: Path, run: Path, *, with_pca: bool = True) -> None:
    """Write a run's map inputs into a staging folder, then give it the run's name."""
    staging = run.with_name(f".staging-{run.name}")
    staging.mkdir(parents=True)
    if with_pca:
        paths = sorted(str(p) for p in images.rglob("*.jpg"))
        table = pa.table({"path": paths, "label": [Path(p).parent.name for p in paths],
                          "pca_features": [[float(i), float(-i), 0.5] for i in range(len(paths))]})
        (staging / "pca").mkdir()
        pq.write_table(table, staging / "pca" / "part-0.parquet")
    (staging / "manifest.json").write_text(json.dumps({"created_utc": "2026-12-07T00:00:00"}))
    os.rename(staging, run)


def _wait_until(condition, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def images(tmp_path: Path) -> Path:
    return generate_demo_images(tmp_path / "images", per_class=3, seed=2)


def test_the_map_is_built_when_the_run_appears_and_is_the_one_the_renderer_would_build(images, tmp_path):
    run = tmp_path / "out" / "runs" / "r1"
    early = EarlyMap(str(run), poll_seconds=0.05).start()
    time.sleep(0.3)
    assert early._fragment is None, "nothing to build before the run's folder exists"
    _publish(images, run)
    _wait_until(lambda: early._fragment is not None)
    early.stop()
    fragment = early.build(str(run))
    assert early.used and fragment == build_map(str(run))
    assert "data:image/jpeg;base64," in fragment  # the thumbnails are in it


def test_a_run_that_never_appears_or_another_folder_is_built_when_asked(images, tmp_path):
    run = tmp_path / "out" / "runs" / "r2"
    early = EarlyMap(str(run), poll_seconds=0.05).start()
    early.stop()  # the notebook ended (failed) before any run was written
    _wait_until(lambda: not early._thread.is_alive(), 10)
    _publish(images, run)
    assert early.build(str(run)) == build_map(str(run)) and not early.used
    other = tmp_path / "out" / "runs" / "r3"
    _publish(images, other)
    assert early.build(str(other)) == build_map(str(other)) and not early.used


def test_an_early_build_that_failed_is_built_again_by_the_renderer(images, tmp_path):
    run = tmp_path / "out" / "runs" / "r4"
    early = EarlyMap(str(run), poll_seconds=0.05).start()
    _publish(images, run, with_pca=False)  # a manifest, but nothing the map can read yet
    _wait_until(lambda: not early._thread.is_alive())
    assert early._fragment is None
    staging = tmp_path / "pca-later"
    _publish(images, staging)
    os.rename(staging / "pca", run / "pca")
    assert early.build(str(run)) == build_map(str(run)) and not early.used


def test_a_remote_run_is_not_polled():
    early = EarlyMap("s3://bucket/out/runs/r5").start()
    assert not early._thread.is_alive() and early._thread.ident is None
