"""Featurization engines: one module each, and the one registry that names them.

=============  ==============================================  =====================================
engine         shipped to workers                              features
=============  ==============================================  =====================================
``onnx``       ONNX graph converted from the Keras model       equal to Keras (relative diff < 1e-4)
               (default: fastest exact engine)
``keras``      the Keras weights arrays                        the reference
``tflite``     the int8 ``.tflite`` file a phone app ships     close to, not equal to, Keras
``onnx-int8``  that ONNX graph quantized to int8, calibrated   close to ``onnx`` (cosine about 0.998)
               on the run's own images
=============  ==============================================  =====================================

Each engine's module (:mod:`~fruits.engines.keras`, :mod:`~fruits.engines.onnx`,
:mod:`~fruits.engines.tflite`, :mod:`~fruits.engines.onnx_int8`) owns how its weights
are resolved, what the driver prepares and what a worker builds (the contract is
:class:`~fruits.engines.base.Engine`). The driver does the heavy, one-off work
(loading weights, converting, quantizing; cached on disk by fingerprint); workers
receive bytes or arrays through a broadcast and build a predictor once per Python
worker (:mod:`fruits.featurize.batches`).

The ``register`` lines at the bottom are the only list of engine names: parameter
validation, the run, ``fruits project``, the benchmark and the workers all ask
:func:`get`. Adding an engine is one new module with an ``Engine`` subclass and one
line here.

Importing this package imports no deep-learning framework (each is imported inside
the function that needs it): parameter validation and every Spark worker import it.

Examples
--------
>>> names()
('onnx', 'keras', 'tflite', 'onnx-int8')
>>> get("tflite").fixed_input_size
224
>>> get("torch")
Traceback (most recent call last):
...
ValueError: engine must be one of onnx, keras, tflite, onnx-int8, got 'torch'
"""

from __future__ import annotations

from fruits.engines import keras, onnx, onnx_int8, tflite
from fruits.engines.base import Engine, Predict, PreparedEngine

__all__ = ["Engine", "Predict", "PreparedEngine", "get", "names", "register"]

_ENGINES: dict[str, Engine] = {}


def register(name: str, engine: type[Engine]) -> Engine:
    """Make ``engine`` (an :class:`Engine` subclass) the engine called ``name``; return its instance.

    The class is instantiated with its name, so what it prepares and the messages it
    raises carry the name a run chose it by.

    Raises
    ------
    ValueError
        ``name`` is empty or already taken, or ``engine`` is not an ``Engine`` subclass.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"an engine name must be a non-empty string, got {name!r}")
    if name in _ENGINES:
        raise ValueError(f"engine {name!r} is already registered ({_ENGINES[name]!r})")
    if not (isinstance(engine, type) and issubclass(engine, Engine)):
        raise ValueError(f"engine {name!r} must be an Engine subclass, got {engine!r}")
    _ENGINES[name] = engine(name)
    return _ENGINES[name]


def get(name: str) -> Engine:
    """The engine registered as ``name``; a ``ValueError`` naming every known engine otherwise."""
    try:
        return _ENGINES[name]
    except (KeyError, TypeError):
        raise ValueError(f"engine must be one of {', '.join(names())}, got {name!r}") from None


def names() -> tuple[str, ...]:
    """Registered engine names, in registration order (the default, ``onnx``, first)."""
    return tuple(_ENGINES)


register("onnx", onnx.OnnxEngine)
register("keras", keras.KerasEngine)
register("tflite", tflite.TfliteEngine)
register("onnx-int8", onnx_int8.OnnxInt8Engine)
