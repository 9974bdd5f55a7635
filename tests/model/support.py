"""Helpers shared by the model and wire tests."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from mecfed.errors import InvalidArgument


@contextmanager
def invalid(field: str, match: str = "") -> Iterator[pytest.ExceptionInfo[InvalidArgument]]:
    """Expects InvalidArgument with exactly one violation, at ``field`` (the
    full path), whose description matches ``match``; the message starts with
    the path, so a client reading only the message still sees the field."""
    with pytest.raises(InvalidArgument) as info:
        yield info
    exc = info.value
    assert [v.field for v in exc.violations] == [field], exc.violations
    assert exc.message.startswith(field), exc.message
    if match:
        assert re.search(match, exc.violations[0].description), exc.violations[0].description
