"""Does an IAM policy document allow an action on a resource? Matching as IAM documents it, for tests.

- Actions: ``service:Name`` compared case-insensitively; ``*`` matches any run of characters
  and ``?`` one character, in the action and in the resource
  (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_action.html,
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_resource.html).
- Resources: ARNs compared case-sensitively; policy variables such as ``${aws:userid}`` are
  replaced from ``variables`` first (an unknown variable matches nothing).
- Only ``Allow`` statements with ``Action`` and ``Resource`` are considered (the project's
  policies use no ``Deny``, ``NotAction`` or ``NotResource``; :func:`check_shape` asserts it).
  Conditions are **not** evaluated here: a statement whose condition would fail still counts as
  allowing. The conditions that matter (the session document check, request tags) are asserted
  by their own tests.
"""

from __future__ import annotations

import re
from functools import lru_cache


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def statements(document: dict) -> list[dict]:
    return as_list(document["Statement"])


@lru_cache(maxsize=None)
def _pattern(text: str, ignore_case: bool) -> re.Pattern:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text)
    return re.compile(body, re.IGNORECASE if ignore_case else 0)


_VARIABLE = re.compile(r"\$\{([^}]+)\}")


def matches(pattern: str, value: str, *, ignore_case: bool = False, variables: dict | None = None) -> bool:
    """IAM's wildcard match of ``value`` against ``pattern`` (after replacing policy variables)."""
    if variables is not None or "${" in pattern:
        missing = [name for name in _VARIABLE.findall(pattern) if name not in (variables or {})]
        if missing:
            return False
        pattern = _VARIABLE.sub(lambda m: variables[m.group(1)], pattern)
    return _pattern(pattern, ignore_case).fullmatch(value) is not None


def check_shape(document: dict) -> None:
    """The policy uses only what :func:`allowing` evaluates."""
    for statement in statements(document):
        assert statement["Effect"] == "Allow", statement
        assert "Action" in statement and "Resource" in statement, statement
        assert not {"NotAction", "NotResource", "NotPrincipal"} & set(statement), statement


def allowing(document: dict, action: str, resource: str | None, *, variables: dict | None = None) -> list[dict]:
    """The statements allowing ``action`` on ``resource`` (``None``: on any resource the statement names)."""
    found = []
    for statement in statements(document):
        if statement.get("Effect") != "Allow":
            continue
        if not any(matches(a, action, ignore_case=True) for a in as_list(statement.get("Action", []))):
            continue
        if resource is None or any(matches(r, resource, variables=variables)
                                   for r in as_list(statement.get("Resource", []))):
            found.append(statement)
    return found
