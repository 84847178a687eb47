"""Checks shared by the tests of the named tuples built on the request path."""

from __future__ import annotations

import inspect
from typing import Any


def assert_keyword_constructor(cls: Any) -> None:
    """``cls.of`` (the request path's keyword constructor, see ja3svc.policy.facts) takes
    exactly the fields, keyword-only, in order, with the class's defaults, and builds what the
    class itself builds from the same keywords."""
    params = list(inspect.signature(cls.of).parameters.values())
    assert [p.name for p in params] == list(cls._fields)
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params)
    defaults = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
    assert defaults == cls._field_defaults
    # A distinct value per field: a field put in another's place cannot go unnoticed.
    values = {name: f"value of {name}" for name in cls._fields}
    built = cls.of(**values)
    assert type(built) is cls
    assert built == cls(**values)
    assert built._asdict() == values
