"""Every default location the project uses, derived in one place.

Paths come from the project root (the checkout that holds ``lib/``) unless an
environment variable overrides them, so nothing else in the package hard-codes a
path and the same code runs from a checkout, an installed wheel or an EMR node.

Environment variables
---------------------
FRUITS_WEIGHTS
    MobileNetV2 weights to use when the ``weights`` parameter is not given: a
    local or ``s3://`` path to a Keras ``.h5`` file, or ``imagenet``.
FRUITS_NOTEBOOKS
    Folder holding the ``NN-verb-object.py`` notebooks (default: ``<root>/notebooks``).
FRUITS_DEMO_DATA
    Where the synthetic demo image set is generated (default: ``<root>/data/demo-synthetic``).
FRUITS_TFLITE_MODEL
    The int8 MobileNetV2 ``.tflite`` file the ``tflite`` engine uses when the
    ``weights`` parameter is not given.
FRUITS_CACHE
    Cache of converted models (default: ``~/.cache/fruits``).
"""

from __future__ import annotations

import os
from pathlib import Path


#: Name of the environment variable that points at MobileNetV2 weights.
WEIGHTS_ENV = "FRUITS_WEIGHTS"
#: Name of the environment variable that points at the int8 TFLite model.
TFLITE_ENV = "FRUITS_TFLITE_MODEL"

_PACKAGE_DIR = Path(__file__).resolve().parent

#: The notebook a local run executes (in :func:`notebooks_dir`).
LOCAL_NOTEBOOK = "01-featurize-local.py"
#: The notebook a Livy run executes (JupyterHub's PySpark kernel, or ``fruits run --livy``).
CLOUD_NOTEBOOK = "02-featurize-emr.py"


def project_root() -> Path:
    """Return the checkout root (``lib/fruits/`` -> ``.``), or the working directory.

    An installed wheel has no checkout around it; then the current directory is the
    most useful anchor for default outputs.
    """
    candidate = _PACKAGE_DIR.parent.parent
    if (candidate / "lib" / "fruits").is_dir():
        return candidate
    return Path.cwd()


def notebooks_dir() -> Path:
    """Folder of the percent-format notebooks that ``fruits run`` executes."""
    return Path(os.environ.get("FRUITS_NOTEBOOKS", project_root() / "notebooks"))


def demo_data_dir() -> Path:
    """Folder where the synthetic demo images are generated on first use."""
    return Path(os.environ.get("FRUITS_DEMO_DATA", project_root() / "data" / "demo-synthetic"))


#: Where a run writes when no output is given: the ``output_dir`` parameter's default
#: (:class:`fruits.params.RunParams`), relative to the project root.
DEFAULT_OUTPUT_DIR = "output/demo"


def default_output_dir() -> Path:
    """:data:`DEFAULT_OUTPUT_DIR` under the project root: what ``fruits run`` writes to without ``--output``."""
    return project_root() / DEFAULT_OUTPUT_DIR


def weights_from_env(variable: str = WEIGHTS_ENV) -> str | None:
    """The value of ``variable`` (``FRUITS_WEIGHTS`` by default), or ``None`` when unset or blank."""
    value = os.environ.get(variable, "").strip()
    return value or None


def cache_dir() -> Path:
    """Where converted models are cached (``FRUITS_CACHE`` or ``~/.cache/fruits``)."""
    return Path(os.environ.get("FRUITS_CACHE", Path.home() / ".cache" / "fruits"))


def keras_cache_dir() -> Path:
    """Keras' own download cache (``$KERAS_HOME/models`` or ``~/.keras/models``)."""
    keras_home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    return Path(keras_home) / "models"


def positive_seconds(value, *, name: str, variable: str, default: float, environ=None) -> float:
    """A duration setting: ``value`` if given, else ``$variable``, else ``default``.

    Raises
    ------
    ValueError
        Not a positive number, naming where it came from (``name`` or ``variable``).

    Examples
    --------
    >>> positive_seconds(None, name="wait", variable="X_WAIT", default=120.0, environ={"X_WAIT": "30"})
    30.0
    """
    environ = os.environ if environ is None else environ
    source, raw = (name, value) if value is not None else (variable, environ.get(variable))
    if raw is None or raw == "":
        return default
    try:
        seconds = float(raw)
    except (TypeError, ValueError):
        seconds = float("nan")
    if not seconds > 0:
        raise ValueError(f"{source} must be a positive number of seconds, got {raw!r}")
    return seconds


def write_cache_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, then rename); a read-only cache is not an error.

    Caches (converted and quantized graphs) only save work: failing to write one costs the
    work again next time, never the run.
    """
    import tempfile

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as handle:
            handle.write(data)
        os.replace(handle.name, path)
    except OSError:
        pass

