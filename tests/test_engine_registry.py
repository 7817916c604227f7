"""The engine registry: one list of names, one error message, and a new engine is one class + one line.

:class:`StandInEngine` below is the whole of a new engine (backed by the NumPy stand-in
model, so no framework is needed); the ``toy`` fixture's ``register`` call is its one
line. The test then drives it through parameter validation, the run's ``prepare``, the
real Spark UDF in real Python workers, the manifest and ``fruits project``, none of
which names it.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

from fruits import engines
from fruits.engines import Engine, PreparedEngine
from fruits.engines.stand_in import random_projection_predictor
from fruits.engines.weights import ResolvedWeights
from fruits.params import RunParams

BUILT_IN = ("onnx", "keras", "tflite", "onnx-int8")


class StandInEngine(Engine):
    """A test engine: its "weights" are a seed, its model the stand-in random projection.

    Module-level, so Spark workers import it by reference, as they import a built-in engine.
    """

    fixed_input_size = 64
    summary = "a test stand-in"

    def resolve(self, requested, *, allow_random, seed=0):
        value = int(requested) if requested is not None else seed
        # The source is what resolve reads back, as a real engine's recorded path: fruits project relies on it.
        return ResolvedWeights(source=str(value), is_random=True,
                               sha256=hashlib.sha256(f"stand-in:{value}".encode()).hexdigest(), arrays=(value,))

    def prepare(self, weights, *, input_size, inputs=(), recorded=None):
        seed = weights.arrays[0]
        if recorded is not None and recorded.get("seed") != seed:
            raise ValueError(f"engine {self.name!r}: the continued run used seed {recorded.get('seed')}, not {seed}")
        return PreparedEngine(self.name, input_size, weights.sha256, seed, details={"seed": seed})

    def build(self, payload, *, threads, input_size):
        return random_projection_predictor(payload, input_size=input_size)


@pytest.fixture
def toy(monkeypatch):
    """Registers ``toy`` for one test (the registry is restored afterwards)."""
    monkeypatch.setattr(engines, "_ENGINES", dict(engines._ENGINES))
    return engines.register("toy", StandInEngine)  # the one line a new engine adds


def test_the_registry_is_the_one_list_of_engines_and_has_one_message_for_an_unknown_name():
    assert engines.names() == BUILT_IN
    expected = "engine must be one of onnx, keras, tflite, onnx-int8, got 'torch'"
    for ask in (lambda: engines.get("torch"), lambda: RunParams(engine="torch").validate()):
        with pytest.raises(ValueError) as raised:
            ask()
        assert str(raised.value) == expected
    with pytest.raises(ValueError, match=r"^engine must be one of .*, got \['onnx'\]"):
        engines.get(["onnx"])
    assert all(isinstance(engines.get(name), Engine) and engines.get(name).name == name for name in BUILT_IN)


def test_register_refuses_a_taken_name_and_what_is_not_an_engine(toy):
    with pytest.raises(ValueError, match="^engine 'onnx' is already registered"):
        engines.register("onnx", StandInEngine)
    with pytest.raises(ValueError, match="^engine 'numpy' must be an Engine subclass"):
        engines.register("numpy", random_projection_predictor)
    with pytest.raises(ValueError, match="^an engine name must be a non-empty string"):
        engines.register(" ", StandInEngine)
    assert engines.names() == BUILT_IN + ("toy",)


def test_the_notebooks_engine_comment_is_written_from_the_registry(toy):
    """A new engine needs no edit of the notebooks' text: ``make sync-notebooks`` lists it."""
    import dataclasses

    from fruits import params

    field = next(f for f in dataclasses.fields(RunParams) if f.name == "engine")
    comment = params.parameter_comment(field)
    assert comment.endswith('"toy" (a test stand-in)') and comment.startswith('"onnx" (default')


def test_importing_the_registry_and_validating_imports_no_framework():
    """Parameter validation and every Spark worker import the registry: it must stay cheap."""
    code = (
        "import json, sys\n"
        "import fruits.featurize.batches\n"
        "from fruits import engines\n"
        "from fruits.params import RunParams\n"
        "for name in engines.names():\n"
        "    RunParams(engine=name).validate()\n"
        "heavy = ('tensorflow', 'keras', 'onnxruntime', 'onnx', 'tf2onnx', 'ai_edge_litert', 'pyspark')\n"
        "print(json.dumps(sorted(m for m in heavy if m in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1]) == []


def test_a_new_engine_is_one_module_and_one_line(toy, spark, tmp_path, monkeypatch):
    """Validation, the run, the workers, the manifest and fruits project all find ``toy`` by asking the registry."""
    from pyspark.sql import functions as F

    from fruits.run.demo_data import generate_demo_images
    from fruits.featurize.preprocess import decode_and_resize
    from fruits.run.execute import execute
    from fruits.run.plan import prepare
    from fruits.run.projection import IncompatibleRunError, project_images

    with pytest.raises(ValueError, match="^image_size must be 64 with engine 'toy' .*got 224"):
        RunParams(engine="toy").validate()
    with pytest.raises(ValueError, match="^engine must be one of onnx, keras, tflite, onnx-int8, toy, got 'torch'"):
        RunParams(engine="torch").validate()

    images = generate_demo_images(tmp_path / "images", per_class=2, seed=5)
    params = RunParams(input_path=str(images), output_dir=str(tmp_path / "out"), engine="toy", image_size=64,
                       weights="3", k=3, batch_size=4)
    prepared = prepare(params)
    assert prepared.engine == PreparedEngine("toy", 64, toy.resolve("3", allow_random=False).sha256, 3)
    result = execute(spark, prepared)
    manifest = result.manifest
    assert manifest["engine"]["name"] == "toy" and manifest["engine"]["seed"] == 3
    assert manifest["weights"]["source"] == "3"

    # The workers built the stand-in from the broadcast seed: features equal the model run here.
    rows = spark.read.parquet(result.layout.features).orderBy("path").collect()
    assert len(rows) == manifest["counts"]["featurized"] == 12
    model = random_projection_predictor(3)
    for row in rows[::5]:
        with open(row.path, "rb") as handle:
            expected = model(decode_and_resize(handle.read(), 64)[None])[0]
        np.testing.assert_allclose(np.asarray(row.features, dtype=np.float32), expected, rtol=1e-5, atol=1e-5)

    # fruits project resolves and prepares the run's engine from its manifest, by name.
    projected = project_images(spark, str(tmp_path / "out"), str(images), str(tmp_path / "projected"))
    assert projected["engine"]["name"] == "toy" and projected["counts"]["projected"] == 12
    with pytest.raises(IncompatibleRunError, match="are not those the run used"):
        project_images(spark, str(tmp_path / "out"), str(images), str(tmp_path / "other"), weights="4")
    features = spark.read.parquet(result.layout.pca).select(F.col("pca_features")).first()[0]
    assert len(features) == 3
