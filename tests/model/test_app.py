"""Tests for mecfed.model.app: the app spec and its per-replica resources."""

from __future__ import annotations

import dataclasses

import pytest

from mecfed.model import AppSpec, Resources
from tests.model.support import invalid


def test_defaults() -> None:
    app = AppSpec("nginx")
    assert app.replicas == 1 and app.echo_port == 7
    assert app.resources == Resources() == Resources(0, 0)  # best effort


def test_records_are_frozen_and_hashable() -> None:
    app = AppSpec("nginx", 2, Resources(500, 64), 7007)
    with pytest.raises(dataclasses.FrozenInstanceError):
        app.replicas = 3  # type: ignore[misc]
    assert hash(app) == hash(AppSpec("nginx", 2, Resources(500, 64), 7007))


@pytest.mark.parametrize("cpu", [0, 1, 63_999, 64_000])
def test_cpu_inside(cpu: int) -> None:
    assert Resources(cpu_millicores=cpu).cpu_millicores == cpu


@pytest.mark.parametrize("cpu", [-1, 64_001, 10**9])
def test_cpu_outside(cpu: int) -> None:
    with invalid("cpu_millicores", f"is {cpu}; it must be between 0 and 64000"):
        Resources(cpu_millicores=cpu)


@pytest.mark.parametrize("memory", [0, 6, 7, 262_143, 262_144])
def test_memory_inside(memory: int) -> None:
    assert Resources(memory_mib=memory).memory_mib == memory


@pytest.mark.parametrize("memory", [1, 2, 5])
def test_memory_below_docker_minimum(memory: int) -> None:
    with invalid("memory_mib", f"is {memory}; it must be 0 or at least 6"):
        Resources(memory_mib=memory)


@pytest.mark.parametrize("memory", [-1, 262_145])
def test_memory_outside(memory: int) -> None:
    with invalid("memory_mib", "it must be between 0 and 262144"):
        Resources(memory_mib=memory)


@pytest.mark.parametrize("replicas", [1, 2, 15, 16])
def test_replicas_inside(replicas: int) -> None:
    assert AppSpec("nginx", replicas=replicas).replicas == replicas


@pytest.mark.parametrize("replicas", [0, -1, 17])
def test_replicas_outside(replicas: int) -> None:
    with invalid("replicas", f"is {replicas}; it must be between 1 and 16"):
        AppSpec("nginx", replicas=replicas)


@pytest.mark.parametrize("port", [1, 7, 65535])
def test_echo_port_inside(port: int) -> None:
    assert AppSpec("nginx", echo_port=port).echo_port == port


@pytest.mark.parametrize("port", [0, -7, 65536])
def test_echo_port_outside(port: int) -> None:
    with invalid("echo_port", "it must be between 1 and 65535"):
        AppSpec("nginx", echo_port=port)


@pytest.mark.parametrize("image", ["", "Nginx", "nginx:", "-nginx", "a" * 256])
def test_image_is_checked(image: str) -> None:
    with invalid("image"):
        AppSpec(image)


def test_image_is_checked_first() -> None:
    # Several wrong fields: the first one checked is reported, and only it.
    with invalid("image"):
        AppSpec("", replicas=0, echo_port=0)


def test_replace_validates() -> None:
    app = AppSpec("nginx")
    with invalid("replicas"):
        dataclasses.replace(app, replicas=17)
