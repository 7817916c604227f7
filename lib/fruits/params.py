"""Run parameters: defaults in one place, validated before any Spark work starts.

A wrong value is cheap to report and expensive to discover after a cluster has
spent an hour featurizing, so :func:`RunParams.validate` checks everything that
can be checked without Spark and names the offending parameter.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from typing import Any, Callable, Mapping, Sequence

from fruits import config
from fruits.featurize.shapes import FEATURE_DIM, INPUT_SIZE
from fruits.spark import settings as spark_settings
from fruits.storage.reach import shared_folders

#: The engine a run uses when none is named: the fastest exact one (:mod:`fruits.engines`).
DEFAULT_ENGINE = "onnx"

#: Ways a run may treat an output folder that already holds results.
MODES = ("error", "overwrite", "incremental")

#: A run id names a folder, locally and on S3: no separators, no leading dot.
RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")

#: What an incremental run does with the PCA: fit again on all features, or reuse the previous model.
PCA_CHOICES = ("refit", "reuse")


def _parameter(default: Any, comment: str | Callable[[], str]) -> Any:
    """A parameter's default with the one-line comment its notebook cell shows.

    Both live on the field so the notebooks' ``parameters`` cells can be generated from
    the dataclass alone (``tools/sync_derived.py``). A callable comment is written when
    asked for (:func:`parameter_comment`): the engine list comes from the registry.
    """
    return dataclasses.field(default=default, metadata={"comment": comment})


def parameter_comment(field: dataclasses.Field) -> str:
    """The one-line comment a notebook's ``parameters`` cell shows for ``field``."""
    comment = field.metadata["comment"]
    return comment() if callable(comment) else comment


def _engine_choices() -> str:
    from fruits import engines  # here, not at the top: the registry loads NumPy and Pillow (1 s)

    return ", ".join(f'"{engine.name}" ({engine.summary})' for engine in map(engines.get, engines.names()))


@dataclasses.dataclass(frozen=True)
class RunParams:
    """Everything a featurization run depends on.

    Parameters
    ----------
    input_path : str or None
        Folder (local path or ``s3://`` URI) of images in one sub-folder per class.
        ``None`` runs the demo on synthetic images the project generates itself.
    output_dir : str
        Folder that receives ``features/``, ``pca/``, ``pca_model/``, ``rejected/``
        and ``manifest.json``.
    weights : str or None
        ``"imagenet"`` (Keras' cache or download), a path to a Keras ``.h5`` weights
        file, ``"random"`` (plumbing tests only), or ``None`` to look up
        ``FRUITS_WEIGHTS`` and then Keras' cache.
    k : int
        Number of PCA components kept when ``variance_target`` is not set.
    variance_target : float or None
        If set (0 < v <= 1), keep the smallest number of components whose cumulative
        explained variance reaches it; ``k`` is then ignored.
    engine : str
        Featurization engine: a name registered in :mod:`fruits.engines` (its
        docstring compares them). ``onnx``, the default, gives the Keras reference's
        features several times faster.
    image_size : int
        Side the images are resized to before the network. 224 is what MobileNetV2
        was trained at and what the study used; 100 (Fruits-360's native size) skips
        upsampling and runs about 4x faster, with different features.
    batch_size : int or None
        Images fed to the network at once inside a task. Bounds worker memory whatever
        Arrow's batch size is. ``None`` takes the engine's own (:attr:`network_batch_size`).
    partitions : int or None
        Spark partitions for featurization; ``None`` picks one from the image count.
    threads_per_task : int
        Intra-op threads the network may use in each Spark task.
    mode : str
        ``"error"`` refuses an output folder that already holds a run;
        ``"overwrite"`` replaces it (only once the new run has succeeded);
        ``"incremental"`` featurizes only images that are new or changed (by path,
        size and modification time) and keeps the previous features of the others.
    pca : str
        ``"refit"`` fits the PCA on all features; ``"reuse"`` (incremental runs only)
        applies the previous run's PCA model, so earlier PCA features do not move.
    seed : int
        Seed for random weights and for the sample of images shown in the report.
    train_path : str or None
        A labelled training set (class sub-folders, e.g. Fruits-360's ``Training/``).
        If set, a logistic regression is fitted on its PCA features and scored on
        the run's images, for the run's k and a sweep of k.
    keep_runs : int
        Runs kept under ``output_dir/runs/`` once this one is current (itself
        included); older ones are deleted after it is published. 2 keeps the one
        before, so a reader that resolved the previous run can finish.
    run_id : str or None
        Name of this run's folder ``output_dir/runs/<run_id>/``; ``None`` makes a new
        one that sorts by start time. ``fruits run`` sets it to know where the report goes.
    shared_paths : str or None
        Folders mounted at the same path on every node of the cluster (NFS, EFS),
        comma-separated. Under a master other than ``local[N]``, a local ``input_path``,
        ``output_dir`` or ``train_path`` (and the demo) is refused before Spark starts,
        since executors on other hosts never see the driver's disk, unless it lies under
        one of these (:mod:`fruits.storage.reach`, ``docs/emr-paths.md``).
    """

    input_path: str | None = _parameter(
        None, "folder of class sub-folders (local or s3://); None: generated synthetic demo images")
    output_dir: str = _parameter(
        config.DEFAULT_OUTPUT_DIR, "receives runs/<run id>/ (features/, pca/, manifest.json, ...) and current.json")
    weights: str | None = _parameter(
        None, "\"imagenet\", a Keras .h5 path (local or s3://), \"random\"; None: FRUITS_WEIGHTS, then Keras' cache")
    k: int = _parameter(50, "PCA components kept")
    variance_target: float | None = _parameter(
        None, "e.g. 0.9: keep the fewest components reaching it (overrides k)")
    engine: str = _parameter(DEFAULT_ENGINE, _engine_choices)
    image_size: int = _parameter(INPUT_SIZE, "100: fast mode at Fruits-360's native size (different features)")
    batch_size: int | None = _parameter(
        None, "images per network call inside a task; None: the engine's own (1 for ONNX Runtime, 32 for Keras)")
    partitions: int | None = _parameter(None, "Spark partitions for featurization; None: from the image count")
    threads_per_task: int = _parameter(1, "network threads per Spark task")
    mode: str = _parameter(
        "error", "\"overwrite\" replaces a run in output_dir, \"incremental\" adds new images to it")
    pca: str = _parameter("refit", "\"reuse\": incremental runs keep the previous PCA model")
    seed: int = _parameter(0, "random weights and sample images")
    train_path: str | None = _parameter(None, "labelled training set: score the features with a classifier")
    keep_runs: int = _parameter(2, "runs kept under output_dir/runs/, this one included; older ones are deleted")
    run_id: str | None = _parameter(None, "this run's folder under output_dir/runs/; None: a new one, sorting by time")
    shared_paths: str | None = _parameter(
        None, "folders mounted on every node (NFS, EFS), comma-separated: off local[N], local paths must be under one")

    @property
    def network_batch_size(self) -> int:
        """Images per network call: ``batch_size``, or the engine's own when it is ``None``.

        The best size depends on the engine (:attr:`fruits.engines.Engine.batch_size`):
        ONNX Runtime on a CPU is fastest one image at a time, whose activations stay in
        the core's cache, while Keras pays a fixed cost per call.
        """
        from fruits import engines  # here, not at the top: the registry loads NumPy and Pillow (1 s)

        return self.batch_size or engines.get(self.engine).batch_size

    @property
    def is_demo(self) -> bool:
        """True when the run uses the generated synthetic images."""
        return self.input_path is None

    def validate(self) -> "RunParams":
        """Raise ``ValueError`` naming the first bad parameter; return ``self`` if all are fine."""
        _check_optional_str("input_path", self.input_path)
        _check_str("output_dir", self.output_dir)
        _check_optional_str("weights", self.weights)
        _check_int("k", self.k, 1, FEATURE_DIM)
        if self.variance_target is not None:
            if (
                isinstance(self.variance_target, bool)
                or not isinstance(self.variance_target, (int, float))
                or not math.isfinite(self.variance_target)
                or not 0 < self.variance_target <= 1
            ):
                raise ValueError(
                    f"variance_target must be a number in (0, 1], got {self.variance_target!r}"
                )
        from fruits import engines  # here, not at the top: the registry loads NumPy and Pillow (1 s)

        engine = engines.get(self.engine)  # the registry's ValueError names every engine
        _check_int("image_size", self.image_size, 32, 512)
        engine.check_input_size(self.image_size)
        if self.batch_size is not None:
            _check_int("batch_size", self.batch_size, 1, 1024)
        if self.partitions is not None:
            _check_int("partitions", self.partitions, 1, 100_000)
        _check_int("threads_per_task", self.threads_per_task, 1, 64)
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.pca not in PCA_CHOICES:
            raise ValueError(f"pca must be one of {', '.join(PCA_CHOICES)}, got {self.pca!r}")
        if self.pca == "reuse" and self.mode != "incremental":
            raise ValueError(f"pca must be 'refit' unless mode is 'incremental', got {self.pca!r}")
        _check_int("seed", self.seed, 0, 2**31 - 1)
        _check_optional_str("train_path", self.train_path)
        _check_int("keep_runs", self.keep_runs, 1, 1000)
        if self.run_id is not None and (not isinstance(self.run_id, str) or not RUN_ID_PATTERN.fullmatch(self.run_id)):
            raise ValueError(
                f"run_id must be 1 to 64 letters, digits, '.', '_' or '-' (not starting with '.'), got {self.run_id!r}"
            )
        _check_optional_str("shared_paths", self.shared_paths)
        shared_folders(self.shared_paths)  # absolute folders, or a ValueError naming shared_paths
        return self

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "RunParams":
        """Build and validate parameters from a mapping, rejecting unknown names.

        Examples
        --------
        >>> RunParams.from_mapping({"k": 10}).k
        10
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**dict(values)).validate()

    @classmethod
    def from_namespace(cls, namespace: Mapping[str, Any]) -> "RunParams":
        """Pick the run parameters out of a notebook's variables and validate them.

        Notebook-only settings (the Spark master, say) are left out, so the local and
        the cloud notebook share this one line.
        """
        names = [f.name for f in dataclasses.fields(cls)]
        return cls.from_mapping({name: namespace[name] for name in names if name in namespace})

    @classmethod
    def field_names(cls) -> list[str]:
        """Names of all run parameters."""
        return [f.name for f in dataclasses.fields(cls)]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every parameter, for the manifest."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class SessionParams:
    """The local notebook's Spark session: where a run computes, not what (not in the manifest).

    ``01-featurize-local`` takes these after the run's parameters; the cloud notebook's
    session comes from Livy (its ``%%configure`` cell), so it takes none.

    Parameters
    ----------
    master : str
        Spark master: ``local[N]``, ``spark://HOST:PORT``, or ``yarn`` on a cluster node.
    driver_memory : str
        Heap of the driver JVM (:data:`fruits.spark.settings.DRIVER_MEMORY` by default).
    """

    master: str = _parameter(spark_settings.LOCAL_MASTER,
                             "Spark master: local[N], spark://HOST:PORT, or yarn on a cluster node")
    driver_memory: str = _parameter(spark_settings.DRIVER_MEMORY, "local Spark JVM heap")

    def validate(self) -> "SessionParams":
        """Raise ``ValueError`` naming the first bad setting; return ``self`` if both are fine."""
        _check_str("master", self.master)
        _check_str("driver_memory", self.driver_memory)
        return self


#: What each notebook's ``parameters`` cell holds, in this order: the run's parameters,
#: then, for the local notebook, its session's.
LOCAL_NOTEBOOK_PARAMETERS = (RunParams, SessionParams)
CLOUD_NOTEBOOK_PARAMETERS = (RunParams,)


def parameter_fields(groups: Sequence[type]) -> list[dataclasses.Field]:
    """The fields of ``groups`` (parameter dataclasses) in order: a notebook cell's lines."""
    return [field for group in groups for field in dataclasses.fields(group)]


def parameter_defaults(groups: Sequence[type]) -> dict[str, Any]:
    """Name -> default of every parameter of ``groups``, in order.

    Examples
    --------
    >>> list(parameter_defaults(LOCAL_NOTEBOOK_PARAMETERS).items())[-2:]
    [('master', 'local[2]'), ('driver_memory', '4g')]
    """
    return {field.name: field.default for field in parameter_fields(groups)}


def validate_parameters(values: Mapping[str, Any], groups: Sequence[type],
                        origin: Mapping[str, str] | None = None) -> None:
    """Validate a complete set of values, group by group (``ValueError`` names the parameter).

    ``origin`` (from :func:`given_values`) names the file a value came from: the error
    then starts with it.
    """
    try:
        for group in groups:
            names = [field.name for field in dataclasses.fields(group)]
            group(**{name: values[name] for name in names if name in values}).validate()
    except ValueError as exc:  # messages start with the parameter's name
        name = str(exc).split(" ", 1)[0]
        if origin and name in origin:
            raise ValueError(f"{origin[name]}: {exc}") from None
        raise


def given_values(groups: Sequence[type], *, files: Sequence[str] = (),
                 assignments: Sequence[tuple[str, str]] = (),
                 flags: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """The values a command was given for a notebook's parameters: each ``-f`` file, then ``-p``, then flags.

    The one rule every command follows (``fruits run``, ``fruits emr run``): later
    ``-f`` files win over earlier ones, ``-p NAME VALUE`` (read as YAML, like papermill)
    over every file, and a flag that is not ``None`` (``--input``, ``--output``) over
    ``-p``. Names and types are checked here; ranges and the rest by
    :func:`validate_parameters` once defaults are filled in.

    Parameters
    ----------
    groups : sequence of type
        The notebook's parameter groups (:data:`LOCAL_NOTEBOOK_PARAMETERS`, ...).
    files : sequence of str
        ``-f`` YAML files, in the order given.
    assignments : sequence of (str, str)
        ``-p NAME VALUE`` pairs, in the order given.
    flags : mapping, optional
        Parameter name -> a flag's value, ``None`` when the flag was not given.

    Returns
    -------
    (dict, dict)
        The values given, and for each value that came from a file, that file.

    Raises
    ------
    ValueError
        An unknown name or a wrong type (naming the file when one set it); a
        parameters file that is missing, not YAML or not a mapping.

    Examples
    --------
    >>> given_values([RunParams], assignments=[("k", "20"), ("mode", "overwrite")], flags={"output_dir": "/o"})
    ({'k': 20, 'mode': 'overwrite', 'output_dir': '/o'}, {})
    """
    known = parameter_defaults(groups)
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for path in files:
        for name, value in read_parameter_file(path, groups).items():
            values[name], origin[name] = value, path
    for name, text in assignments:
        if name not in known:
            raise ValueError(f"unknown parameter {name!r}; known: {', '.join(known)}")
        values[name] = parse_value(text)
        check_type(name, values[name], groups)
        origin.pop(name, None)
    for name, value in (flags or {}).items():
        if value is not None:
            values[name] = value
            origin.pop(name, None)
    return values, origin


def check_type(name: str, value: Any, groups: Sequence[type]) -> None:
    """Refuse a value whose type the parameter cannot take (``"50"`` for ``k``), before any range check.

    Raises
    ------
    ValueError
        ``name`` is not a parameter of ``groups``, or ``value`` has the wrong type.

    Examples
    --------
    >>> check_type("k", "50", [RunParams])
    Traceback (most recent call last):
    ...
    ValueError: k must be an integer, got '50'
    """
    hints = {}
    for group in groups:
        hints.update(typing.get_type_hints(group))
    if name not in hints:
        raise ValueError(f"unknown parameter {name!r}; known: {', '.join(parameter_defaults(groups))}")
    kinds = typing.get_args(hints[name]) or (hints[name],)
    if not any(_is_a(value, kind) for kind in kinds):
        wanted = " or ".join(_TYPE_NAMES[kind] for kind in kinds)
        raise ValueError(f"{name} must be {wanted}, got {value!r}")


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", type(None): "null"}


def _is_a(value: Any, kind: type) -> bool:
    if isinstance(value, bool):  # YAML's true/false is no parameter's value
        return False
    if kind is float:
        return isinstance(value, (int, float))
    if kind is type(None):
        return value is None
    return isinstance(value, kind)


def parse_value(text: str) -> Any:
    """Read a ``-p`` value as YAML, like papermill: ``50`` -> int, ``null`` -> None, paths stay strings.

    Examples
    --------
    >>> parse_value("50"), parse_value("0.9"), parse_value("null"), parse_value("a/b.h5")
    (50, 0.9, None, 'a/b.h5')
    """
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def read_parameter_file(path: str, groups: Sequence[type] = (RunParams,)) -> dict[str, Any]:
    """The values of a parameters file (papermill's ``-f``): a YAML mapping of names to values.

    Environments differ by such small files (``params/emr.yaml``), not by notebook
    defaults. Every key must be a parameter of ``groups`` and every value of its type;
    ranges and combinations are checked once all sources are merged. An empty file sets
    nothing.

    Raises
    ------
    ValueError
        Not found, not YAML, not a mapping, an unknown key or a wrong type; the message
        starts with ``path`` and names the key.
    """
    import yaml

    try:
        with open(path, encoding="utf-8") as handle:
            values = yaml.safe_load(handle)
    except FileNotFoundError:
        raise ValueError(f"{path}: parameters file not found") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: must be a mapping of parameter names to values, got {type(values).__name__}")
    for name, value in values.items():
        try:
            check_type(name, value, groups)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
    return values


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer between {low} and {high}, got {value!r}")


def _check_str(name: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")


def _check_optional_str(name: str, value: Any) -> None:
    if value is not None:
        _check_str(name, value)
