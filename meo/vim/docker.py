"""VIM driver for the local Docker engine (docker SDK, sync calls run in a
worker thread so the event loop never blocks).

Containers get ``network_mode="none"``: the only interfaces they get are the
overlay veths the MEO moves in, CNI style."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping

import docker
from docker.models.containers import Container

from mecfed.errors import DeploymentFailed
from meo.vim.base import LABEL_SYSTEM, LABEL_TESTBED, Instance, Resources


class DockerVim:
    def __init__(self, system_id: str, client: docker.DockerClient | None = None) -> None:
        self.system_id = system_id
        self.host = f"{system_id}-docker"
        self._client = client
        # The testbed labels everything its systems make so that `testbed
        # down` finds containers even after every MEO crashed.
        testbed = os.environ.get("MECFED_TESTBED", "")
        self._extra_labels = {LABEL_TESTBED: testbed} if testbed else {}
        # Images known to be present: the lookup costs a daemon round trip
        # on every deployment otherwise. A create that finds the image gone
        # still fails clearly (and forgets it here).
        self._images_seen: set[str] = set()

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = docker.from_env()
        return self._client

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
                raise DeploymentFailed(
                    f"image {image!r} not found on this host; build or load it first"
                ) from None

        if image not in self._images_seen:
            await asyncio.to_thread(lookup)
            self._images_seen.add(image)

    async def create_instance(
        self,
        name: str,
        image: str,
        labels: Mapping[str, str],
        resources: Resources,
        env: Mapping[str, str] | None = None,
    ) -> Instance:
        def create() -> Instance:
            kwargs: dict = {}
            if resources.cpu_millicores:
                kwargs["nano_cpus"] = resources.cpu_millicores * 1_000_000
            if resources.memory_mib:
                kwargs["mem_limit"] = f"{resources.memory_mib}m"
            container = None
            try:
                container = self.client.containers.create(
                    image,
                    name=name,
                    labels={**labels, **self._extra_labels, LABEL_SYSTEM: self.system_id},
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
                    raise DeploymentFailed(f"container {name} exited right after start")
                return inst
            except docker.errors.ImageNotFound:
                self._images_seen.discard(image)
                self._remove(container)
                raise DeploymentFailed(f"image {image!r} not found on this host") from None
            except docker.errors.APIError as exc:
                self._remove(container)
                raise DeploymentFailed(f"could not start container {name}: {exc}") from None
            except BaseException:
                self._remove(container)
                raise

        return await asyncio.to_thread(create)

    async def rename_instance(self, instance_id: str, name: str) -> Instance:
        """Renames a running container (a warm-pool claim) and returns it as
        it is now; raises ``docker.errors.NotFound`` if it is gone."""

        def rename() -> Instance:
            container = self.client.containers.get(instance_id)
            container.rename(name)
            container.reload()
            return self._instance(container)

        return await asyncio.to_thread(rename)

    @staticmethod
    def _remove(container: Container | None) -> None:
        if container is None:
            return
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass

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

        await asyncio.to_thread(delete)

    async def list_instances(self, labels: Mapping[str, str] | None = None) -> list[Instance]:
        want = {LABEL_SYSTEM: self.system_id, **(labels or {})}

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

        return await asyncio.to_thread(list_)

    async def get_instance(self, instance_id: str) -> Instance | None:
        def get() -> Instance | None:
            try:
                return self._instance(self.client.containers.get(instance_id))
            except docker.errors.NotFound:
                return None

        return await asyncio.to_thread(get)
