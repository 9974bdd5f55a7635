"""The testbed's network: one namespace per MEC system on a shared underlay.

Layout for prefix ``P`` (e.g. ``mecfed-``)::

    root ns                P-ul ns                       P-s<i> ns
    P-h  10.213.0.1/16 ──── P-hb ─┐                        lo (up)
                                  ├─ br0 (bridge)
                                  └─ p<i> ──────────────── ul0 10.213.0.(10+i)/16
                                                           default via 10.213.0.1

The bridge lives in its own namespace, not in the root one: with Docker
installed, br_netfilter pushes bridged frames through the root namespace's
iptables FORWARD chain, whose policy Docker sets to DROP. A fresh namespace
has no rules, so frames between systems pass. The root namespace only gets a
veth end holding the gateway address, so the CLI reaches every system and
every system reaches services on the host via the gateway. Forwarding is
switched off on that veth, so nothing from the testbed is routed off the
machine (no NAT, no ip_forward changes).

All calls are synchronous pyroute2; the testbed runs them in a thread. The
names and addresses come from :class:`mecfed.testbed.plan.Underlay`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import signal
import socket
from collections.abc import Callable, Sequence
from pathlib import Path

from pyroute2 import IPRoute, netns
from pyroute2.netlink.exceptions import NetlinkError

from mecfed.testbed.plan import Underlay

log = logging.getLogger(__name__)

SYSTEM_IFNAME = "ul0"
BRIDGE_IFNAME = "br0"

# Called with ("namespace" | "link", name) before that name is created.
Record = Callable[[str, str], None]


def _set_sysctl(path: str, value: str) -> None:
    Path(path).write_text(value)


def check_subnet_free(ul: Underlay) -> None:
    """Refuses a subnet that overlaps an address or route on the host (other
    than the testbed's own gateway link), so the testbed never shadows a real
    network."""
    with IPRoute() as ipr:
        own = set(ipr.link_lookup(ifname=ul.host_link))
        for msg in ipr.get_addr(family=socket.AF_INET):
            if msg["index"] in own:
                continue
            net = ipaddress.ip_network(
                f"{msg.get_attr('IFA_ADDRESS')}/{msg['prefixlen']}", strict=False
            )
            if net.overlaps(ul.subnet):
                raise RuntimeError(f"testbed subnet {ul.subnet} overlaps host address {net}")
        for msg in ipr.get_routes(family=socket.AF_INET, table=254):
            dst = msg.get_attr("RTA_DST")
            if dst is None or msg["dst_len"] == 0 or msg.get_attr("RTA_OIF") in own:
                continue
            net = ipaddress.ip_network(f"{dst}/{msg['dst_len']}", strict=False)
            if net.overlaps(ul.subnet):
                raise RuntimeError(f"testbed subnet {ul.subnet} overlaps host route {net}")


def _ensure_ns(name: str) -> None:
    if name not in netns.listnetns():
        netns.create(name)


def _set_up(ipr: IPRoute, ifname: str) -> int:
    idx = ipr.link_lookup(ifname=ifname)[0]
    ipr.link("set", index=idx, state="up")
    return idx


def _ensure_addr(ipr: IPRoute, idx: int, ip: str, prefixlen: int) -> None:
    try:
        ipr.addr("add", index=idx, address=ip, prefixlen=prefixlen)
    except NetlinkError as exc:
        if exc.code != 17:  # EEXIST: already configured by an earlier up
            raise


def ensure_underlay(ul: Underlay) -> None:
    """Creates the underlay namespace, its bridge and the gateway veth."""
    _ensure_ns(ul.namespace)
    with IPRoute(netns=ul.namespace) as ipr:
        _set_up(ipr, "lo")
        if not ipr.link_lookup(ifname=BRIDGE_IFNAME):
            ipr.link("add", ifname=BRIDGE_IFNAME, kind="bridge")
        _set_up(ipr, BRIDGE_IFNAME)
    with IPRoute() as ipr:
        if not ipr.link_lookup(ifname=ul.host_link):
            ipr.link(
                "add",
                ifname=ul.host_link,
                kind="veth",
                peer={"ifname": ul.host_peer, "net_ns_fd": ul.namespace},
            )
        # Received on the gateway link = from the testbed: never route it on.
        _set_sysctl(f"/proc/sys/net/ipv4/conf/{ul.host_link}/forwarding", "0")
        _set_sysctl(f"/proc/sys/net/ipv6/conf/{ul.host_link}/disable_ipv6", "1")
        idx = _set_up(ipr, ul.host_link)
        _ensure_addr(ipr, idx, str(ul.gateway), ul.subnet.prefixlen)
    with IPRoute(netns=ul.namespace) as ipr:
        br = ipr.link_lookup(ifname=BRIDGE_IFNAME)[0]
        peer = ipr.link_lookup(ifname=ul.host_peer)[0]
        ipr.link("set", index=peer, master=br, state="up")


def ensure_system(ul: Underlay, index: int) -> None:
    """Creates the namespace of system ``index`` attached to the underlay."""
    ns = ul.system_namespace(index)
    port = ul.system_port(index)
    _ensure_ns(ns)
    with IPRoute(netns=ns) as ipr:
        _set_up(ipr, "lo")
        has_link = bool(ipr.link_lookup(ifname=SYSTEM_IFNAME))
    with IPRoute(netns=ul.namespace) as ipr:
        if has_link != bool(ipr.link_lookup(ifname=port)):
            # Half of a pair left by a crash; start over with a fresh pair.
            for idx in ipr.link_lookup(ifname=port):
                ipr.link("del", index=idx)
            if has_link:
                with IPRoute(netns=ns) as sys_ipr:
                    sys_ipr.link("del", index=sys_ipr.link_lookup(ifname=SYSTEM_IFNAME)[0])
            has_link = False
        if not has_link:
            ipr.link(
                "add",
                ifname=port,
                kind="veth",
                peer={"ifname": SYSTEM_IFNAME, "net_ns_fd": ns},
            )
        br = ipr.link_lookup(ifname=BRIDGE_IFNAME)[0]
        ipr.link("set", index=ipr.link_lookup(ifname=port)[0], master=br, state="up")
    with IPRoute(netns=ns) as ipr:
        idx = _set_up(ipr, SYSTEM_IFNAME)
        _ensure_addr(ipr, idx, str(ul.system_ip(index)), ul.subnet.prefixlen)
        try:
            ipr.route("add", dst="0.0.0.0/0", gateway=str(ul.gateway))
        except NetlinkError as exc:
            if exc.code != 17:
                raise


def provision(ul: Underlay, indices: Sequence[int], record: Record) -> None:
    """The underlay and the namespaces of systems ``indices``; each name is
    handed to ``record`` (which saves it) before it is created, so a crash
    in between leaves a name that ``remove_all`` clears even though it may
    not exist."""
    record("namespace", ul.namespace)
    record("link", ul.host_link)
    ensure_underlay(ul)
    for index in indices:
        record("namespace", ul.system_namespace(index))
        ensure_system(ul, index)


def testbed_namespaces(prefix: str) -> list[str]:
    return sorted(ns for ns in netns.listnetns() if ns.startswith(prefix))


def testbed_links(prefix: str) -> list[str]:
    """Links in the root namespace whose name carries the prefix."""
    with IPRoute() as ipr:
        names = [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()]
    return sorted(n for n in names if n and n.startswith(prefix))


def remove_all(prefix: str) -> None:
    """Deletes every root-ns link and namespace named with ``prefix``.

    Deleting a namespace (once no process is left in it) destroys the links
    inside and thereby their veth peers, so this also clears a half-built
    testbed.
    """
    with IPRoute() as ipr:
        for name in testbed_links(prefix):
            for idx in ipr.link_lookup(ifname=name):
                try:
                    ipr.link("del", index=idx)
                except NetlinkError as exc:
                    if exc.code != 19:  # ENODEV: went with its peer already
                        raise
    for ns in testbed_namespaces(prefix):
        try:
            netns.remove(ns)
        except FileNotFoundError:
            pass


def remove_vim_namespaces(meta_dir: Path) -> list[str]:
    """Removes the namespaces (and their app processes) that a system's netns
    VIM recorded in ``meta_dir`` (one ``<namespace>.json`` with the pid each):
    they are named after the MEC system, not the testbed, so the prefix
    sweep does not find them."""
    removed = []
    for meta in sorted(meta_dir.glob("*.json")):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            os.kill(int(json.loads(meta.read_text())["pid"]), signal.SIGKILL)
        with contextlib.suppress(FileNotFoundError, OSError):
            netns.remove(meta.stem)
            removed.append(meta.stem)
    return removed


def namespace_pids(prefix: str) -> dict[str, list[int]]:
    """Processes living in the testbed's namespaces, by namespace name."""
    wanted = set(testbed_namespaces(prefix))
    if not wanted:
        return {}
    inodes = {os.stat(f"{netns.NETNS_RUN_DIR}/{ns}").st_ino: ns for ns in wanted}
    found: dict[str, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ino = os.stat(f"/proc/{entry}/ns/net").st_ino
        except OSError:
            continue
        if ino in inodes:
            found.setdefault(inodes[ino], []).append(int(entry))
    return found
