"""The managed-Spark platforms ``fruits`` knows, by name: ``fruits <name> <verb>``.

Like papermill's engine registry, one line per platform and one error message for an unknown
name; nothing else lists the names. A built-in platform is named by ``"module:Class"`` and
imported only when asked for, so ``fruits run`` never imports a cloud SDK's code.

Examples
--------
>>> "emr" in platform_names()
True
>>> get_platform("emr").name
'emr'
"""

from __future__ import annotations

import importlib

from fruits.cloud.platform import SparkPlatform

#: The platforms ``fruits`` knows: name -> ``"module:Class"``, imported when first asked for.
BUILT_IN: dict[str, str] = {
    "emr": "fruits.cloud.emr.platform:EmrPlatform",
}
_registry: dict[str, str | type[SparkPlatform]] = dict(BUILT_IN)


def register(name: str, platform: str | type[SparkPlatform]) -> None:
    """Make ``platform`` (a class, or ``"module:Class"``) the one ``fruits <name>`` uses.

    Raises
    ------
    ValueError
        ``name`` is not a lowercase word usable as a CLI command.
    """
    if not (name.isascii() and name.replace("-", "").isalnum() and name == name.lower()):
        raise ValueError(f"platform name must be a lowercase word (letters, digits, '-'), got {name!r}")
    _registry[name] = platform


def platform_names() -> list[str]:
    """The registered platforms' names, sorted."""
    return sorted(_registry)


def get_platform(name: str) -> SparkPlatform:
    """A new instance of the platform registered as ``name``.

    Raises
    ------
    ValueError
        No platform of that name is registered, naming the ones that are.
    """
    if name not in _registry:
        raise ValueError(f"unknown platform {name!r}; known: {', '.join(platform_names())}")
    platform = _registry[name]
    if isinstance(platform, str):
        module, _, attribute = platform.partition(":")
        platform = getattr(importlib.import_module(module), attribute)
    if not (isinstance(platform, type) and issubclass(platform, SparkPlatform)):
        raise TypeError(f"platform {name!r} is registered as {platform!r}, which is not a SparkPlatform class")
    if platform.name != name:
        raise TypeError(f"platform {name!r} is registered as {platform.__name__}, whose name is {platform.name!r}")
    return platform()
