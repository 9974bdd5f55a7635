"""Fixtures of the MEO tests (implemented in meo_helpers and meo_fakes)."""

from collections.abc import AsyncIterator

import pytest
from meo_fakes import Meo, running_meo
from meo_helpers import echo_image, underlay


@pytest.fixture
async def env(tmp_path) -> AsyncIterator[Meo]:
    """A MEO (system sys-a, underlay 192.0.2.1) served on 127.0.0.1:0 over
    a fake VIM and fake host networking."""
    async with running_meo(tmp_path) as meo:
        yield meo


@pytest.fixture
def meo(env: Meo):
    """(stub, orchestrator) of :func:`env`."""
    return env.stub, env.orch


__all__ = ["echo_image", "env", "meo", "underlay"]
