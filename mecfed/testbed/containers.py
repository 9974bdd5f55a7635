"""Docker clean-up of a testbed: containers and networks labelled
``mecfed.testbed=<name>`` (the MEO labels what it creates with the
``MECFED_TESTBED`` of its environment), found even if the MEO died."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

LABEL = "mecfed.testbed"


def remove_containers(testbed: str) -> None:
    """Removes Docker containers and networks labelled ``mecfed.testbed``."""
    try:
        import docker
        from docker.errors import DockerException, NotFound
    except ImportError:
        return
    try:
        client = docker.from_env()
    except DockerException as exc:
        log.warning("docker not reachable, skipping container cleanup: %s", exc)
        return
    label = {"label": f"{LABEL}={testbed}"}
    try:
        for container in client.containers.list(all=True, filters=label):
            try:
                container.remove(force=True)
            except NotFound:
                pass
        for network in client.networks.list(filters=label):
            try:
                network.remove()
            except NotFound:
                pass
    finally:
        client.close()


__all__ = ["LABEL", "remove_containers"]
