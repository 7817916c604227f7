"""Shared fixtures: one local Spark session, small generated image sets, real-data locations.

Real weights and images are found through ``FRUITS_WEIGHTS`` and
``FRUITS_TEST_IMAGES`` (the Fruits-360 folder holding ``Test/``). Where unset, the
tests that need them are skipped with the reason; under CI (``CI=true``) a missing
location fails instead, so CI can never pass by skipping them.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from fruits.run.demo_data import generate_demo_images

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: Java options for the JVMs the tests start: their drivers (subprocess runs, notebook kernels,
#: the Livy double's sessions) through ``SPARK_SUBMIT_OPTS``, which spark-submit puts before the
#: project's own ``spark.driver.extraJavaOptions``, and the standalone clusters' daemons and
#: executors through :data:`CLUSTER_JVM_ENVIRON`. These JVMs live seconds to a minute, and CI's
#: two cores are the suite's bottleneck: with the quick compiler (C1) only, a JVM that starts
#: Spark and runs one job spends about 5 CPU-seconds instead of 10 (the optimizing compiler's
#: threads compile code the JVM then barely runs). Compilers change no result; the tests of the
#: project's own choice of compilers (``tests/test_short_run.py``) start their JVMs without it.
TEST_JVM_OPTIONS = "-XX:TieredStopAtLevel=1"
if TEST_JVM_OPTIONS not in os.environ.get("SPARK_SUBMIT_OPTS", ""):  # xdist workers inherit the controller's
    os.environ["SPARK_SUBMIT_OPTS"] = f"{os.environ.get('SPARK_SUBMIT_OPTS', '')} {TEST_JVM_OPTIONS}".strip()

#: Environment for a test's standalone Master and Worker: the Worker's executors inherit it
#: (spark-submit's options do not reach them). The JVMs note it on their own logs' first line.
CLUSTER_JVM_ENVIRON = {"JAVA_TOOL_OPTIONS": TEST_JVM_OPTIONS}

ON_CI = os.environ.get("CI", "").lower() == "true"


def _required_location(variable: str, what: str) -> Path:
    value = os.environ.get(variable, "").strip()
    if value and Path(value).exists():
        return Path(value)
    reason = f"{what}: set {variable}" + (f" ({value!r} does not exist)" if value else " (unset)")
    if ON_CI:
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def real_weights() -> Path:
    """Path of the real MobileNetV2 ImageNet ``.h5`` weights."""
    return _required_location("FRUITS_WEIGHTS", "real MobileNetV2 weights needed")


@pytest.fixture(scope="session")
def real_tflite() -> Path:
    """Path of the int8 MobileNetV2 ``.tflite`` model."""
    return _required_location("FRUITS_TFLITE_MODEL", "the int8 TFLite MobileNetV2 needed")


@pytest.fixture(scope="session")
def real_images() -> Path:
    """The Fruits-360 folder holding ``Test/`` (and ``Training-sample/``)."""
    root = _required_location("FRUITS_TEST_IMAGES", "real Fruits-360 images needed")
    if not (root / "Test").is_dir():
        pytest.fail(f"FRUITS_TEST_IMAGES={root} has no Test/ folder")
    return root


def pytest_collection_modifyitems(items):
    """Every test that needs the session (directly or through a fixture) is marked ``spark``."""
    for item in items:
        if "spark" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.spark)


@pytest.fixture(scope="session")
def spark():
    """A local[2] session shared by the whole test run, stopped at the end.

    It keeps the JVM's optimizing compiler (``-XX:TieredStopAtLevel=4``, the default, after
    :data:`TEST_JVM_OPTIONS`): it lives the whole run and does its Spark ML fits, which the
    quick compiler alone made slower (five test files: 237 s tiered, 271 s with C1 only).
    """
    from fruits.spark.session import DRIVER_JAVA_OPTIONS, local_spark

    session = local_spark("local[2]", app_name="fruits-tests", driver_memory="2g",
                          conf={DRIVER_JAVA_OPTIONS: "-XX:TieredStopAtLevel=4"})
    yield session
    session.stop()


@pytest.fixture
def demo_images(tmp_path: Path) -> Path:
    """A small synthetic set: 6 classes x 5 images, plus the marker text file."""
    return generate_demo_images(tmp_path / "images", per_class=5, seed=1)


def copy_slice(source: Path, target: Path, *, classes: int, per_class: int) -> Path:
    """Copy the first ``per_class`` images of the first ``classes`` class folders."""
    import shutil

    for folder in sorted(p for p in source.iterdir() if p.is_dir())[:classes]:
        destination = target / folder.name
        destination.mkdir(parents=True)
        for image in sorted(folder.iterdir())[:per_class]:
            shutil.copy2(image, destination / image.name)
    return target


#: What a moto server puts in ``os.environ`` (and its stop restores).
_MOTO_ENV_KEYS = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
                  "AWS_SESSION_TOKEN", "AWS_PROFILE", "FSSPEC_S3_ENDPOINT_URL")


@contextlib.contextmanager
def moto_server(**server_env):
    """moto's server on loopback with throwaway credentials in ``os.environ``; stopped and restored after.

    fsspec keeps one S3FileSystem per set of arguments for the whole process, and the
    endpoint comes from the environment: its cache is cleared on start and stop, so a
    filesystem made for an earlier server is never reused against this one.
    """
    import s3fs

    from fruits.cloud.hub.aws import MotoServer

    server = MotoServer(environment=server_env).start(timeout=30)
    saved = {key: os.environ.get(key) for key in _MOTO_ENV_KEYS}
    endpoint = server.url
    try:
        for key in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
            os.environ.pop(key, None)
        os.environ.update({"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
                           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "eu-west-3",
                           "FSSPEC_S3_ENDPOINT_URL": endpoint})
        s3fs.S3FileSystem.clear_instance_cache()
        yield endpoint
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

