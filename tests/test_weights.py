import os

import numpy as np
import pytest

from fruits.engines import weights as weights_module
from fruits.engines.weights import MissingWeightsError, resolve_weights


@pytest.fixture
def no_imagenet(monkeypatch):
    """Simulate a machine without Keras' cache and without internet."""
    def refuse(input_size):
        raise MissingWeightsError("Keras could not find 'imagenet' weights (simulated: offline)")
    monkeypatch.setattr(weights_module, "_keras_imagenet", refuse)
    monkeypatch.delenv("FRUITS_WEIGHTS", raising=False)


def test_random_weights_are_identical_for_the_same_seed():
    first = resolve_weights("random", allow_random=False, seed=4)
    second = resolve_weights("random", allow_random=False, seed=4)
    assert first.is_random and first.sha256 == second.sha256
    assert resolve_weights("random", allow_random=False, seed=5).sha256 != first.sha256


def test_demo_falls_back_to_random_weights_and_says_so(no_imagenet):
    resolved = resolve_weights(None, allow_random=True)
    assert resolved.is_random and "RANDOM" in resolved.describe()


def test_non_demo_without_weights_names_both_settings(no_imagenet):
    with pytest.raises(MissingWeightsError, match="FRUITS_WEIGHTS.*'weights' parameter"):
        resolve_weights(None, allow_random=False)


def test_missing_file_from_the_environment_is_an_error(no_imagenet, monkeypatch, tmp_path):
    monkeypatch.setenv("FRUITS_WEIGHTS", str(tmp_path / "missing.h5"))
    with pytest.raises(MissingWeightsError, match="missing.h5.*FRUITS_WEIGHTS.*does not exist"):
        resolve_weights(None, allow_random=True)


def test_parameter_wins_over_the_environment(no_imagenet, monkeypatch, tmp_path):
    monkeypatch.setenv("FRUITS_WEIGHTS", str(tmp_path / "missing.h5"))
    assert resolve_weights("random", allow_random=False).is_random


def test_a_file_that_is_not_weights_is_refused(tmp_path):
    bogus = tmp_path / "bogus.h5"
    bogus.write_bytes(b"not hdf5")
    with pytest.raises(MissingWeightsError, match="could not be loaded"):
        resolve_weights(str(bogus), allow_random=False)


@pytest.mark.slow
def test_real_weights_file_loads(real_weights):
    resolved = resolve_weights(str(real_weights), allow_random=False)
    assert not resolved.is_random and sum(a.size for a in resolved.arrays) == 2_257_984


@pytest.mark.slow
def test_a_weights_file_loaded_once_is_read_back_without_tensorflow(real_weights, tmp_path):
    """The second resolve of the same file reads the cached arrays: same fingerprint, no Keras import."""
    import subprocess
    import sys

    env = {**os.environ, "FRUITS_CACHE": str(tmp_path / "cache")}
    probe = (
        "import sys\n"
        "from fruits.engines.weights import resolve_weights\n"
        f"resolved = resolve_weights({str(real_weights)!r}, allow_random=False)\n"
        "print(resolved.sha256, len(resolved.arrays), 'tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    first, second = (subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                                    timeout=300, check=True).stdout.split() for _ in range(2))
    assert first[2] == "True"  # the first load needs Keras
    assert second[:2] == first[:2] and second[2:] == ["False", "False"]
    assert len(list((tmp_path / "cache" / "weights").glob("*.npz"))) == 1


def test_a_corrupt_arrays_cache_entry_is_loaded_again(tmp_path, monkeypatch):
    """A truncated cache file is ignored (the weights file is read again), never an error."""
    monkeypatch.setenv("FRUITS_CACHE", str(tmp_path))
    path = weights_module._arrays_cache_path("0" * 64)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PK\x03\x04 truncated")
    assert weights_module._read_arrays(path) is None
    arrays = (np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(4, dtype=np.float32))
    weights_module._write_arrays(path, arrays)
    back = weights_module._read_arrays(path)
    assert [a.tolist() for a in back] == [a.tolist() for a in arrays]


def test_random_weights_built_once_are_read_back_without_keras(tmp_path):
    """Random weights come from the cache after the first run: the same arrays, no Keras import (7 s)."""
    import subprocess
    import sys

    env = {**os.environ, "FRUITS_CACHE": str(tmp_path / "cache")}
    probe = (
        "import sys\n"
        "from fruits.engines.weights import resolve_weights\n"
        "resolved = resolve_weights('random', allow_random=False, seed=3)\n"
        "print(resolved.sha256, resolved.is_random, 'keras' in sys.modules)\n"
    )
    first, second = (subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                                    timeout=300, check=True).stdout.split() for _ in range(2))
    assert first[1:] == ["True", "True"]  # built by Keras the first time
    assert second == [first[0], "True", "False"]
    cached = list((tmp_path / "cache" / "weights").glob("random-seed3-*.npz"))
    assert len(cached) == 1
    cached[0].write_bytes(b"PK\x03\x04 truncated")  # a damaged entry is built again, same arrays
    third = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                           timeout=300, check=True).stdout.split()
    assert third == first


OFFLINE_RESOLVE = """
import json, sys
from fruits.engines import weights
weights.IMAGENET_BASE_URL = sys.argv[1]
try:
    resolved = weights.resolve_weights(None, allow_random=sys.argv[2] == "demo")
    outcome = {"random": resolved.is_random, "source": resolved.source}
except weights.MissingWeightsError as exc:
    outcome = {"error": str(exc)}
print(json.dumps({**outcome, "keras_imported": "keras" in sys.modules}))
"""


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:  # bound, never listening: a connection is refused at once
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_offline_the_demo_falls_back_to_random_without_importing_keras(monkeypatch, tmp_path):
    """No 'imagenet' file in Keras' cache and no network: refused at once, no 6-second Keras import."""
    import json
    import subprocess
    import sys

    resolve_weights("random", allow_random=False)  # the random arrays are in the cache, as after one run
    monkeypatch.delenv("FRUITS_WEIGHTS", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    port = _closed_port()
    outcomes = {}
    for who in ("demo", "run"):
        done = subprocess.run([sys.executable, "-c", OFFLINE_RESOLVE, f"http://127.0.0.1:{port}/weights/", who],
                              capture_output=True, text=True, timeout=120, check=True)
        outcomes[who] = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcomes["demo"] == {"random": True, "source": "random (seed 0)", "keras_imported": False}
    assert not outcomes["run"]["keras_imported"]
    assert f"could not be downloaded from http://127.0.0.1:{port}/weights/mobilenet_v2_weights" in outcomes["run"]["error"]
    assert "FRUITS_WEIGHTS" in outcomes["run"]["error"]
    assert not (tmp_path / "keras").exists() or not any((tmp_path / "keras").rglob("*.h5")), "no partial file left"


@pytest.mark.slow
def test_imagenet_is_downloaded_where_keras_keeps_it_then_read_from_there(real_weights, monkeypatch, tmp_path):
    """Served by a server on 127.0.0.1 in place of Keras' host: downloaded once into Keras' cache, then read."""
    import functools
    import http.server
    import shutil
    import threading

    served = tmp_path / "served"
    served.mkdir()
    shutil.copy(real_weights, served / weights_module.imagenet_file_name(224))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setattr(weights_module, "IMAGENET_BASE_URL", f"http://127.0.0.1:{server.server_port}/")
        monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
        monkeypatch.delenv("FRUITS_WEIGHTS", raising=False)
        resolved = resolve_weights(None, allow_random=False)
        cached = tmp_path / "keras" / "models" / weights_module.imagenet_file_name(224)
        assert cached.read_bytes() == real_weights.read_bytes()
        assert (resolved.source, resolved.is_random) == ("imagenet", False)
        assert resolved.sha256 == resolve_weights(str(real_weights), allow_random=False).sha256
        server.shutdown()  # from now on only the cache can answer
        assert resolve_weights("imagenet", allow_random=False).sha256 == resolved.sha256
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
