"""VIM driver for machines without Docker: each instance is the static echo
server running as a process in its own, new network namespace.

The namespace is created with pyroute2 (bind-mounted under /var/run/netns so
it survives the process); the process is forked from a thread that has
setns-ed into it, so it starts there without a ``preexec_fn``. The image
name is recorded but not run: this driver only knows the echo app. Instance
metadata (pid, labels) sits in a small JSON file next to
the orchestrator state so listing and cleanup work after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from pyroute2 import IPRoute, netns

from mecfed.errors import DeploymentFailed, FailedPrecondition, MecfedError
from mecfed.model.checks import DEFAULT_ECHO_PORT
from meo.image import build_echo_binary
from meo.nsutil import create_netns, run_in_netns
from meo.vim.base import (
    LABEL_APP,
    LABEL_INSTALLATION,
    LABEL_SYSTEM,
    Instance,
    Resources,
    name_prefix,
)

log = logging.getLogger(__name__)
NETNS_DIR = "/var/run/netns"


def _lo_up() -> None:
    with IPRoute() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")


class NetnsVim:
    def __init__(
        self,
        system_id: str,
        *,
        installation: str = "",
        bin_dir: str | None = None,
        meta_dir: str | None = None,
    ) -> None:
        self.system_id = system_id
        self.installation = installation
        self.host = f"{system_id}-netns"
        self._bin_dir = bin_dir
        self._meta = Path(meta_dir or f"/run/mecfed-netns-vim/{system_id}")
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    def _prefix(self) -> str:
        # Namespaces carry no labels: the installation is in their names.
        return name_prefix(self.system_id, self.installation)

    def _meta_file(self, name: str) -> Path:
        return self._meta / f"{name}.json"

    async def create_instance(
        self,
        name: str,
        image: str,
        labels: Mapping[str, str],
        resources: Resources,
        env: Mapping[str, str] | None = None,
    ) -> Instance:
        if not name.startswith(self._prefix()):
            name = self._prefix() + name
        app = labels.get(LABEL_APP, name)
        labels = {**labels, LABEL_SYSTEM: self.system_id, "mecfed.image": image}
        if self.installation:
            labels[LABEL_INSTALLATION] = self.installation

        def create() -> Instance:
            binary = build_echo_binary(self._bin_dir)
            path = f"{NETNS_DIR}/{name}"
            if os.path.exists(path):
                raise DeploymentFailed(f"network namespace {name} of app {app} already exists")
            create_netns(name)
            try:
                run_in_netns(path, _lo_up)
                # Forked from a thread that sits in the new namespace, the child
                # starts there: no preexec_fn, which is unsafe in a process with
                # gRPC threads (fork + Python code before exec can deadlock/crash).
                proc = run_in_netns(
                    path,
                    lambda: subprocess.Popen(
                        [str(binary)],
                        env={"ECHO_PORT": str(DEFAULT_ECHO_PORT), **(env or {})},
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        start_new_session=True,  # a Ctrl-C on the MEO must not kill apps
                    ),
                )
                time.sleep(0.02)
                if proc.poll() is not None:
                    raise DeploymentFailed(
                        f"the echo process of app {app} ({name}) exited right after it started"
                    )
                self._procs[name] = proc
                self._meta.mkdir(parents=True, exist_ok=True)
                self._meta_file(name).write_text(json.dumps({"pid": proc.pid, "labels": labels}))
                return Instance(id=name, name=name, pid=proc.pid, netns_path=path, labels=labels)
            except BaseException:
                self._delete_sync(name)
                raise

        try:
            return await asyncio.to_thread(create)
        except MecfedError:
            raise
        except Exception as exc:  # netlink, OSError, a failed compile: logged, not passed on
            log.warning("starting %s in network namespace %s failed: %s", app, name, exc)
            raise DeploymentFailed(
                f"could not start app {app} in a network namespace on {self.host}"
            ) from exc

    async def check_image(self, image: str) -> None:
        """Every image runs as the echo app here: nothing to check."""

    async def rename_instance(self, instance_id: str, name: str) -> Instance | None:
        raise FailedPrecondition(
            f"the netns VIM of {self.host} cannot rename instances (it keeps no warm pool)"
        )

    async def fill(self) -> None:
        """No warm pool."""

    async def close(self) -> None:
        """Nothing runs in the background; app processes outlive the MEO."""

    def _delete_sync(self, name: str) -> None:
        proc = self._procs.pop(name, None)
        pids: set[int] = set()
        meta = self._read_meta(name)
        if meta:
            pids.add(int(meta["pid"]))
        if proc is not None:
            pids.add(proc.pid)
        # Anything else still inside the namespace (e.g. after a crash) goes too.
        with contextlib.suppress(Exception):
            pids.update(netns.ns_pids().get(name, ()))
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 2.0
        if proc is not None:
            try:
                proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pid in pids:
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.01)
            with contextlib.suppress(ProcessLookupError):
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)
        if os.path.exists(f"{NETNS_DIR}/{name}"):
            with contextlib.suppress(FileNotFoundError):
                netns.remove(name)
        self._meta_file(name).unlink(missing_ok=True)

    def _read_meta(self, name: str) -> dict | None:
        try:
            return json.loads(self._meta_file(name).read_text())
        except (FileNotFoundError, ValueError):
            return None

    async def delete_instance(self, instance_id: str) -> None:
        if not instance_id.startswith(self._prefix()):
            return  # never touch namespaces this system did not make
        await asyncio.to_thread(self._delete_sync, instance_id)

    def _instance(self, name: str) -> Instance | None:
        path = f"{NETNS_DIR}/{name}"
        meta = self._read_meta(name)
        if meta is None and not os.path.exists(path):
            return None
        pid = int(meta["pid"]) if meta else 0
        return Instance(
            id=name,
            name=name,
            pid=pid,
            netns_path=path,
            # Without its metadata a namespace's maker is unknown (a 6-digit
            # prefix can collide): "" keeps the orphan sweep off it; an intent
            # or a cleanup still removes it by name.
            labels=dict(meta["labels"])
            if meta
            else {LABEL_SYSTEM: self.system_id, LABEL_INSTALLATION: ""},
            running=bool(pid) and _alive(pid),
        )

    async def list_instances(self, labels: Mapping[str, str] | None = None) -> list[Instance]:
        def list_() -> list[Instance]:
            names = set(netns.listnetns()) if os.path.isdir(NETNS_DIR) else set()
            if self._meta.is_dir():
                names.update(p.stem for p in self._meta.glob("*.json"))
            out = []
            for name in sorted(n for n in names if n.startswith(self._prefix())):
                inst = self._instance(name)
                if inst and all(inst.labels.get(k) == v for k, v in (labels or {}).items()):
                    out.append(inst)
            return out

        return await asyncio.to_thread(list_)

    async def get_instance(self, instance_id: str) -> Instance | None:
        if not instance_id.startswith(self._prefix()):
            return None
        return await asyncio.to_thread(self._instance, instance_id)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
