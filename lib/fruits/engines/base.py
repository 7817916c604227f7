"""What an engine is: three jobs, two sides of the cluster, one object handed between them.

Every engine owns, in its own module:

``resolve`` (driver)
    find and load its weights from the run's ``weights`` parameter, with its own
    order and fallbacks (only the demo may fall back to random weights);
``prepare`` (driver)
    the heavy one-off work (converting, quantizing; cached on disk by fingerprint),
    returning a :class:`PreparedEngine` whose payload is broadcast to the workers;
``build`` (worker)
    ``predict(pixels) -> features`` from that payload, importing its framework there
    and only there.

A predictor takes a ``uint8`` batch ``(n, size, size, 3)`` of RGB pixels (decoded
and resized by :mod:`fruits.featurize.preprocess`, the same for every engine) and returns
``float32`` features ``(n, 1280)``.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
from typing import Callable, Mapping, Sequence

import numpy as np

from fruits.engines.weights import ResolvedWeights

#: ``predict(pixels)``: ``uint8`` array ``(n, size, size, 3)`` -> ``float32`` ``(n, 1280)``.
Predict = Callable[[np.ndarray], np.ndarray]


@dataclasses.dataclass(frozen=True)
class PreparedEngine:
    """An engine ready to broadcast: its name, input size, payload and identity.

    ``details`` holds what the manifest must record beyond the name and fingerprint
    (``onnx-int8``: its calibration images).
    """

    name: str
    input_size: int
    sha256: str
    payload: object = dataclasses.field(repr=False, compare=False)
    details: dict = dataclasses.field(default_factory=dict, compare=False)

    def cache_key(self, threads: int) -> str:
        """Identity of the predictor a worker builds (see :func:`fruits.featurize.batches.cached_predictor`)."""
        return f"{self.name}:{self.sha256}:{self.input_size}:{threads}"


class Engine(abc.ABC):
    """One featurization engine; :func:`fruits.engines.register` makes it one with its name.

    Subclasses implement :meth:`resolve`, :meth:`prepare` and :meth:`build`, import
    their framework inside those methods only (the registry is imported by parameter
    validation and by every Spark worker), and set :attr:`fixed_input_size` when their
    model takes one input size only. Instances are pickled by reference to their class
    into the workers' tasks, so a worker imports the engine's module itself.

    Parameters
    ----------
    name : str
        The name the engine is registered under: ``engine=`` in a run's parameters.
    """

    #: A few words for the notebooks' ``engine`` parameter comment (generated from the registry).
    summary: str = ""

    #: Side of the square input the model is fixed to; ``None`` when any ``image_size`` works.
    fixed_input_size: int | None = None

    #: Images per network call when the run's ``batch_size`` is ``None``. 32 suits frameworks
    #: with a fixed cost per call (Keras); ONNX Runtime engines set 1 (measured there).
    batch_size: int = 32

    #: How many of the run's images :meth:`prepare` calibrates on, when :meth:`needs_inputs`
    #: says it needs them (the run picks them in Spark, evenly spaced through the sorted paths).
    calibration_images: int = 0

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<engine {self.name!r} ({type(self).__module__}.{type(self).__qualname__})>"

    @abc.abstractmethod
    def resolve(self, requested: str | None, *, allow_random: bool, seed: int = 0) -> ResolvedWeights:
        """Find and load this engine's weights on the driver.

        Parameters
        ----------
        requested : str or None
            The run's ``weights`` parameter; ``None`` lets the engine look where it
            documents (an environment variable, a cache).
        allow_random : bool
            True for the demo only: the engine may fall back to seeded random weights
            instead of raising, if it can make such weights at all.
        seed : int
            Seed of random weights.

        Raises
        ------
        fruits.engines.weights.MissingWeightsError
            Nothing usable was found; the message says what was tried and how to fix it.
        """

    @abc.abstractmethod
    def prepare(self, weights: ResolvedWeights, *, input_size: int, inputs: Sequence[str] = (),
                recorded: Mapping | None = None) -> PreparedEngine:
        """Turn resolved weights into what workers need (driver side).

        Parameters
        ----------
        weights : ResolvedWeights
            What :meth:`resolve` returned.
        input_size : int
            Side of the square network input.
        inputs : sequence of str
            Image paths of the run (:attr:`calibration_images` of them, chosen by the run
            when :meth:`needs_inputs`), for an engine that calibrates; others ignore them.
        recorded : mapping, optional
            The ``engine`` record of the run being continued or projected (its
            manifest's), so an engine that depends on more than its weights (the int8
            calibration) rebuilds exactly the same model. ``None`` for a new run.
        """

    @abc.abstractmethod
    def build(self, payload, *, threads: int, input_size: int) -> Predict:
        """Worker side: the predictor for ``payload`` (:attr:`PreparedEngine.payload`).

        Parameters
        ----------
        threads : int
            Intra-op threads: one per Spark task slot keeps concurrent tasks from
            fighting over the same cores.
        input_size : int
            Side of the square input the pixels come at.
        """

    def needs_inputs(self, recorded: Mapping | None = None) -> bool:
        """True when :meth:`prepare` needs the run's images (``inputs``) to build its model.

        The run then prepares the engine only once Spark has listed the images, on
        :attr:`calibration_images` of them. ``recorded`` (see :meth:`prepare`) may make
        them unnecessary: a continued run rebuilds the model its record describes.
        """
        return False

    def check_input_size(self, image_size: int) -> None:
        """Raise ``ValueError`` when the model cannot take ``image_size`` (see :attr:`fixed_input_size`)."""
        if self.fixed_input_size is not None and image_size != self.fixed_input_size:
            raise ValueError(
                f"image_size must be {self.fixed_input_size} with engine {self.name!r} (the model's fixed input), "
                f"got {image_size!r}"
            )

    def prepared(self, payload: bytes, *, input_size: int, details: dict | None = None) -> PreparedEngine:
        """A :class:`PreparedEngine` of this engine for a serialized model, identified by its SHA-256."""
        return PreparedEngine(self.name, input_size, hashlib.sha256(payload).hexdigest(), payload,
                              details=dict(details or {}))
