"""``bench/peers.py`` on a few real images: it writes its table and its peers did the same work.

The benchmark's point is a fair comparison, so what is checked is that each peer
featurized every image and that Spark's ``predict_batch_udf`` peer, running the
project's ONNX graph on the project's preprocessing, wrote exactly the project's
features. The study's peer (TensorFlow, two minutes on two shared cores for any
number of images) is left out here; its features are compared by every real run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IMAGES = 4


@pytest.mark.slow
@pytest.mark.spark
def test_peers_writes_its_table_and_predict_batch_udf_matches_the_project_bit_for_bit(real_weights, real_images,
                                                                                      tmp_path):
    command = [sys.executable, str(ROOT / "bench" / "peers.py"), "--images", str(IMAGES),
               "--peers", "predict_batch_udf", "project", "--data", str(real_images / "Test"),
               "--weights", str(real_weights), "--out", str(tmp_path), "--name", "smoke"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600,
                               env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"})
    assert completed.returncode == 0, completed.stderr[-4000:]

    table = (tmp_path / "smoke.md").read_text()
    assert "| peer | wall s | images/s | x study | x project |" in table
    assert "| predict_batch_udf |" in table and "| project |" in table
    figures = json.loads((tmp_path / "smoke.json").read_text())
    assert figures["images"] == IMAGES and figures["reference"] == "project"
    assert set(figures["results"]) == {"predict_batch_udf", "project"}
    assert figures["results"]["project"]["x_project"] == pytest.approx(1.0)
    same = figures["agreement"]["predict_batch_udf"]
    assert same["images"] == same["common"] == IMAGES
    assert same["bit_identical"] == IMAGES, same
    assert figures["results"]["predict_batch_udf"]["model_sha256"] == figures["results"]["project"]["model_sha256"]
