"""VIM driver for the local Docker engine (docker SDK, sync calls run in a
worker thread so the event loop never blocks).

Containers get ``network_mode="none"``: the only interfaces they get are the
overlay veths the MEO moves in, CNI style.

Docker's errors stop here: each is logged with the engine's text and raised
as a domain error in our words (:func:`_translated`): an image that is not
on this host (images are built or loaded locally, there is no registry) is
FAILED_PRECONDITION, CPU or memory above what the host has is
RESOURCE_EXHAUSTED, an unreachable engine is UNAVAILABLE, anything else
while starting a container is a :class:`~mecfed.errors.DeploymentFailed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import docker
import requests
from docker.models.containers import Container

from mecfed.errors import (
    DeploymentFailed,
    FailedPrecondition,
    Internal,
    MecfedError,
    ResourceExhausted,
    Unavailable,
)
from meo.vim.base import (
    LABEL_APP,
    LABEL_INSTALLATION,
    LABEL_SYSTEM,
    LABEL_TESTBED,
    Instance,
    Resources,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class HostCapacity:
    """What one container may ask for at most on this engine's host."""

    cpus: int
    memory_bytes: int


def _image_missing(image: str, host: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"image {image!r} not found on host {host}: images are built or loaded locally "
        "(there is no registry); build or load it first"
    )


def _unreachable(host: str) -> Unavailable:
    return Unavailable(f"the Docker engine of host {host} is not reachable")


@contextlib.contextmanager
def _translated(host: str, what: str, fallback: Callable[[], MecfedError]) -> Iterator[None]:
    """Docker SDK errors during ``what`` as domain errors: connection errors
    UNAVAILABLE, any other engine error ``fallback()``; the engine's text is
    logged, not passed on."""
    try:
        yield
    except MecfedError:
        raise
    except requests.exceptions.ConnectionError as exc:
        log.warning("%s: Docker engine of %s unreachable: %s", what, host, exc)
        raise _unreachable(host) from None
    except docker.errors.DockerException as exc:
        if "fetching server API version" in str(exc):  # from_env() found no engine
            log.warning("%s: Docker engine of %s unreachable: %s", what, host, exc)
            raise _unreachable(host) from None
        log.warning("%s on %s failed: %s", what, host, exc)
        raise fallback() from None
    except requests.exceptions.RequestException as exc:  # timeouts and the like
        log.warning("%s: Docker engine of %s did not answer: %s", what, host, exc)
        raise _unreachable(host) from None


class DockerVim:
    def __init__(
        self,
        system_id: str,
        client: docker.DockerClient | None = None,
        *,
        installation: str = "",
    ) -> None:
        self.system_id = system_id
        self.installation = installation
        self.host = f"{system_id}-docker"
        self._client = client
        # Every container carries its system and installation; listings
        # filter on both, so another installation's containers are invisible.
        self._own = {LABEL_SYSTEM: system_id}
        if installation:
            self._own[LABEL_INSTALLATION] = installation
        # The testbed labels everything its systems make so that `testbed
        # down` finds containers even after every MEO crashed.
        testbed = os.environ.get("MECFED_TESTBED", "")
        self._extra_labels = {LABEL_TESTBED: testbed} if testbed else {}
        # Images known to be present: the lookup costs a daemon round trip
        # on every deployment otherwise. A create that finds the image gone
        # still fails clearly (and forgets it here).
        self._images_seen: set[str] = set()
        self._capacity: HostCapacity | None = None

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            with _translated(self.host, "connect", lambda: _unreachable(self.host)):
                self._client = docker.from_env()
        return self._client

    async def _run(self, what: str, fallback: Callable[[], MecfedError], fn: Callable[[], T]) -> T:
        def call() -> T:
            with _translated(self.host, what, fallback):
                return fn()

        return await asyncio.to_thread(call)

    @staticmethod
    def _instance(c: Container) -> Instance:
        pid = int(c.attrs.get("State", {}).get("Pid") or 0)
        return Instance(
            id=c.id,
            name=c.name,
            pid=pid,
            netns_path=f"/proc/{pid}/ns/net" if pid else "",
            labels=dict(c.labels or {}),
            running=c.status == "running",
        )

    async def check_image(self, image: str) -> None:
        """Fails fast, before anything is made, when the image is missing
        (no registry is assumed reachable: images are built or loaded)."""

        def lookup() -> None:
            try:
                self.client.images.get(image)
            except docker.errors.ImageNotFound:
                raise _image_missing(image, self.host) from None

        if image not in self._images_seen:
            await self._run(
                f"image lookup {image}",
                lambda: FailedPrecondition(f"could not look up image {image!r} on {self.host}"),
                lookup,
            )
            self._images_seen.add(image)

    def _host_capacity(self) -> HostCapacity:
        if self._capacity is None:
            info = self.client.info()
            self._capacity = HostCapacity(int(info["NCPU"]), int(info["MemTotal"]))
        return self._capacity

    def _check_fits(self, app: str, resources: Resources) -> None:
        cap = self._host_capacity()
        if resources.cpu_millicores > cap.cpus * 1000:
            raise ResourceExhausted(
                f"app {app} asks for {resources.cpu_millicores} millicores per replica; "
                f"host {self.host} has {cap.cpus} CPUs ({cap.cpus * 1000} millicores)"
            )
        if resources.memory_mib * 2**20 > cap.memory_bytes:
            raise ResourceExhausted(
                f"app {app} asks for {resources.memory_mib} MiB per replica; "
                f"host {self.host} has {cap.memory_bytes // 2**20} MiB"
            )

    async def create_instance(
        self,
        name: str,
        image: str,
        labels: Mapping[str, str],
        resources: Resources,
        env: Mapping[str, str] | None = None,
    ) -> Instance:
        app = labels.get(LABEL_APP, name)

        def create() -> Instance:
            self._check_fits(app, resources)
            kwargs: dict[str, Any] = {}
            if resources.cpu_millicores:
                kwargs["nano_cpus"] = resources.cpu_millicores * 1_000_000
            if resources.memory_mib:
                kwargs["mem_limit"] = f"{resources.memory_mib}m"
            container = None
            try:
                container = self.client.containers.create(
                    image,
                    name=name,
                    labels={**labels, **self._extra_labels, **self._own},
                    environment=dict(env or {}),
                    network_mode="none",
                    auto_remove=False,
                    detach=True,
                    **kwargs,
                )
                container.start()
                container.reload()
                inst = self._instance(container)
                if not inst.running or not inst.pid:
                    raise DeploymentFailed(
                        f"container {name} of app {app} exited right after it started"
                    )
                return inst
            except docker.errors.ImageNotFound:
                self._images_seen.discard(image)
                self._remove(container)
                raise _image_missing(image, self.host) from None
            except BaseException:
                self._remove(container)
                raise

        return await self._run(
            f"start container {name} ({image})",
            lambda: DeploymentFailed(f"could not start container for app {app} on {self.host}"),
            create,
        )

    async def rename_instance(self, instance_id: str, name: str) -> Instance | None:
        """Renames a running container (a warm-pool claim) and returns it as
        it is now; None if it is gone."""

        def rename() -> Instance | None:
            try:
                container = self.client.containers.get(instance_id)
                container.rename(name)
                container.reload()
            except docker.errors.NotFound:
                return None
            return self._instance(container)

        return await self._run(
            f"rename container {instance_id[:12]}",
            lambda: DeploymentFailed(f"could not claim container {instance_id[:12]}"),
            rename,
        )

    def _remove(self, container: Container | None) -> None:
        """Best effort during a rollback: the create's own error is what
        the caller needs to hear."""
        if container is None:
            return
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            log.error("could not remove half-made container %s: %s", container.id, exc)

    async def delete_instance(self, instance_id: str) -> None:
        def delete() -> None:
            try:
                # force: SIGKILL + remove in one call; the echo app holds no state
                self.client.api.remove_container(instance_id, force=True, v=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                if "already in progress" not in str(exc):
                    raise

        await self._run(
            f"remove container {instance_id[:12]}",
            lambda: Internal(f"could not remove container {instance_id[:12]} on {self.host}"),
            delete,
        )

    async def list_instances(self, labels: Mapping[str, str] | None = None) -> list[Instance]:
        want = {**(labels or {}), **self._own}

        def list_() -> list[Instance]:
            rows = self.client.api.containers(
                all=True, filters={"label": [f"{k}={v}" for k, v in want.items()]}
            )
            found = []
            for row in rows:
                try:
                    found.append(self._instance(self.client.containers.get(row["Id"])))
                except docker.errors.NotFound:
                    continue  # removed since the listing, e.g. by a concurrent release
            return found

        return await self._run(
            "list containers",
            lambda: Internal(f"could not list the containers on {self.host}"),
            list_,
        )

    async def get_instance(self, instance_id: str) -> Instance | None:
        def get() -> Instance | None:
            try:
                return self._instance(self.client.containers.get(instance_id))
            except docker.errors.NotFound:
                return None

        return await self._run(
            f"inspect container {instance_id[:12]}",
            lambda: Internal(f"could not inspect container {instance_id[:12]} on {self.host}"),
            get,
        )

    async def fill(self) -> None:
        """No warm pool of its own (see :class:`meo.vim.pool.PooledVim`)."""

    async def close(self) -> None:
        """Nothing runs in the background."""
