"""The ``emr-config/`` templates: plain EMR JSON with ``${NAME}`` placeholders, rendered into requests.

Every EMR request is a plain dict built from these templates and printed as is by
``--dry-run``, so what would be sent to AWS can be read, diffed and tested without
touching anything. The templates hold ``${BUCKET}``, ``${PREFIX}``, ``${WHEEL}`` (and, for
IAM, ``${ACCOUNT}`` and the role names); nothing in them is a secret (EMR prints
configurations back in plaintext).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Mapping

from fruits import config

_PLACEHOLDER = re.compile(r"\$\{([A-Z_]+)\}")


def emr_config_dir() -> Path:
    """The ``emr-config/`` folder of the checkout (``FRUITS_EMR_CONFIG`` overrides)."""
    return Path(os.environ.get("FRUITS_EMR_CONFIG", config.project_root() / "emr-config"))


def render(template: Any, values: Mapping[str, str]) -> Any:
    """Replace ``${NAME}`` placeholders in every string of a JSON-like structure.

    Raises
    ------
    ValueError
        A placeholder has no value.

    Examples
    --------
    >>> render({"Path": "s3://${BUCKET}/x", "Args": ["${BUCKET}"]}, {"BUCKET": "b"})
    {'Path': 's3://b/x', 'Args': ['b']}
    """
    if isinstance(template, dict):
        return {key: render(value, values) for key, value in template.items()}
    if isinstance(template, list):
        return [render(value, values) for value in template]
    if isinstance(template, str):
        def substitute(match):
            name = match.group(1)
            if name not in values:
                raise ValueError(f"no value for ${{{name}}} in the EMR templates")
            return values[name]
        return _PLACEHOLDER.sub(substitute, template)
    return template


def load_template(name: str) -> Any:
    """One JSON file of ``emr-config/``, unrendered."""
    with open(emr_config_dir() / name, encoding="utf-8") as handle:
        return json.load(handle)
