"""The run manifest: what was asked, what ran, what came out, and how long it took.

Written as ``manifest.json`` next to the outputs, so a result can be traced to its
parameters, weights and package versions without the notebook that produced it.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import platform

#: Packages whose versions decide the features; recorded in every manifest.
TRACKED_PACKAGES = (
    "fruits-emr", "pyspark", "tensorflow-cpu", "tensorflow", "keras", "numpy",
    "pandas", "pyarrow", "pillow", "fsspec",
)


def package_versions() -> dict[str, str]:
    """Installed versions of :data:`TRACKED_PACKAGES` (absent ones are left out) and Python."""
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def utc_now() -> str:
    """ISO-8601 UTC timestamp, second precision."""
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def write_json(document: dict, path: str) -> None:
    """Write ``document`` as indented JSON to a local path or fsspec URL."""
    import fsspec

    with fsspec.open(path, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2, sort_keys=False)
        handle.write("\n")


def read_json(path: str) -> dict:
    """Read a manifest (local path or fsspec URL)."""
    import fsspec

    with fsspec.open(path, "r", encoding="utf-8") as handle:
        return json.load(handle)
