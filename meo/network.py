"""The VXLAN overlay of one federation on this host (pyroute2 only).

Per federation the host gets::

    app netns: fed<n> ──veth── mfv<i><t><nn> ─┐
                                              ├─ bridge mfb<i><t> ── vxlan mfx<i><t> ──(UDP)── peer
    app netns: fed<n> ──veth── mfv<i><t><nn> ─┘

where ``<i>`` is 4 hex digits of the MEO's installation id, ``<t>`` the
federation's 6-hex-digit *tag* and ``<nn>`` the instance index (2 hex
digits): at most 15 characters, the kernel's limit. The tag starts as a hash
of the federation's key and is re-drawn at creation while it collides with a
tag in use (recorded, intended, or a link of that name on the host); it is
recorded with the federation and in the intent written before the first link
is made, so teardown and crash cleanup find the links by name.

Names are short, so they cannot prove ownership: every host-side link also
carries the alias ``mecfed:<installation id>:<federation key>`` (the full
id). The sweep of links nobody owns (:func:`owned_links`) and teardown go by
that alias, so another installation's links whose names happen to match are
never touched. Deleting the host end of a veth removes the end inside the
app's namespace too.

These functions block; call them via ``asyncio.to_thread``. They act on the
network namespace the calling process (the MEO) runs in.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import ipaddress
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Any

from opentelemetry.trace import Tracer
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from mecfed.errors import DeploymentFailed, MecfedError
from meo.nsutil import run_in_netns

log = logging.getLogger(__name__)

LINK_PREFIXES = ("mfb", "mfx", "mfv", "mft")
VXLAN_OVERHEAD = 50  # outer IPv4 + UDP + VXLAN + inner Ethernet
IFNAMSIZ = 15
TAG_LEN = 6
ALIAS_PREFIX = "mecfed:"


def short_hash(text: str, length: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def installation_prefix(installation: str) -> str:
    return short_hash(installation, 4)


def first_tag(key: str, attempt: int = 0) -> str:
    """The ``attempt``-th tag candidate for federation ``key``."""
    return short_hash(f"{key}#{attempt}" if attempt else key, TAG_LEN)


@dataclass(frozen=True)
class LinkNames:
    """Link names of one federation (all ≤ 15 characters) and their alias."""

    installation: str
    tag: str
    key: str = ""  # the federation's key_text, for the alias (informative)

    @property
    def h(self) -> str:
        return installation_prefix(self.installation) + self.tag

    @property
    def alias(self) -> str:
        return f"{ALIAS_PREFIX}{self.installation}:{self.key}"

    @property
    def bridge(self) -> str:
        return f"mfb{self.h}"

    @property
    def vxlan(self) -> str:
        return f"mfx{self.h}"

    def veth(self, i: int) -> str:
        return f"mfv{self.h}{i:02x}"

    def veth_tmp_peer(self, i: int) -> str:
        # The peer's name while it is still in the host netns, before the move.
        return f"mft{self.h}{i:02x}"

    def owns(self, ifname: str) -> bool:
        return ifname[:3] in LINK_PREFIXES and ifname[3 : 3 + len(self.h)] == self.h

    def mine(self, alias: str | None) -> bool:
        """A link of these names is ours unless another installation's alias says otherwise."""
        return not alias or alias.startswith(f"{ALIAS_PREFIX}{self.installation}:")


@dataclass(frozen=True)
class Attachment:
    """One app instance to plug into the overlay."""

    pid: int  # a process in the instance's netns (veth moves by pid)
    netns_path: str
    ip: ipaddress.IPv4Interface  # e.g. 172.30.7.129/24


@dataclass(frozen=True)
class VxlanInfo:
    ifname: str
    vni: int
    port: int


def existing_vxlans() -> list[VxlanInfo]:
    """Every VXLAN link in this netns, whoever made it (collision check)."""
    out = []
    with IPRoute() as ipr:
        for link in ipr.get_links():
            info = link.get_attr("IFLA_LINKINFO")
            if not info or info.get_attr("IFLA_INFO_KIND") != "vxlan":
                continue
            data = info.get_attr("IFLA_INFO_DATA")
            out.append(
                VxlanInfo(
                    ifname=link.get_attr("IFLA_IFNAME"),
                    vni=int(data.get_attr("IFLA_VXLAN_ID") or 0),
                    port=int(data.get_attr("IFLA_VXLAN_PORT") or 0),
                )
            )
    return out


def _names_and_aliases(ipr: IPRoute) -> list[tuple[str, str | None]]:
    return [
        (link.get_attr("IFLA_IFNAME"), link.get_attr("IFLA_IFALIAS")) for link in ipr.get_links()
    ]


def links_of(names: LinkNames) -> list[str]:
    with IPRoute() as ipr:
        return sorted(
            n for n, alias in _names_and_aliases(ipr) if names.owns(n) and names.mine(alias)
        )


def host_link_names() -> set[str]:
    """Every link name in this netns (tag collision check)."""
    with IPRoute() as ipr:
        return {n for n, _ in _names_and_aliases(ipr)}


def owned_links(installation: str) -> dict[str, str]:
    """Every link this installation made, by its alias: name -> tag."""
    mark = f"{ALIAS_PREFIX}{installation}:"
    prefix_len = 3 + len(installation_prefix(installation))
    with IPRoute() as ipr:
        return {
            n: n[prefix_len : prefix_len + TAG_LEN]
            for n, alias in _names_and_aliases(ipr)
            if alias and alias.startswith(mark) and n[:3] in LINK_PREFIXES
        }


def delete_links(ifnames: Sequence[str]) -> None:
    """Idempotent: links already gone are skipped."""
    with IPRoute() as ipr:
        for name in ifnames:
            for idx in ipr.link_lookup(ifname=name):
                with contextlib.suppress(NetlinkError):
                    ipr.link("del", index=idx)


def teardown(names: LinkNames) -> list[str]:
    """Removes every link of one federation; returns what it removed."""
    # veths first: the bridge then goes away without flapping ports.
    found = sorted(links_of(names), key=lambda n: not n.startswith(("mfv", "mft")))
    delete_links(found)
    return found


def _configure_peer(tmp_name: str, ip: ipaddress.IPv4Interface, mtu: int) -> str:
    """Runs inside the app's netns: rename the veth to fed<n>, address it."""
    with IPRoute() as ipr:
        taken = {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        n = next(i for i in range(1000) if f"fed{i}" not in taken)
        name = f"fed{n}"
        idx = ipr.link_lookup(ifname=tmp_name)[0]
        ipr.link("set", index=idx, ifname=name, mtu=mtu)
        ipr.addr("add", index=idx, address=str(ip.ip), prefixlen=ip.network.prefixlen)
        ipr.link("set", index=idx, state="up")
        lo = ipr.link_lookup(ifname="lo")
        if lo:
            ipr.link("set", index=lo[0], state="up")
        return name


def _underlay_mtu(ipr: IPRoute, local_ip: str) -> int:
    for addr in ipr.get_addr(address=local_ip):
        link = ipr.get_links(addr["index"])[0]
        return int(link.get_attr("IFLA_MTU"))
    return 1500


_REASONS = {
    errno.EEXIST: "a link of that name, or a VXLAN link with that VNI and UDP port, "
    "already exists on this host",
    errno.EADDRINUSE: "the UDP port is already in use on this host",
    errno.EPERM: "not permitted (the MEO needs CAP_NET_ADMIN)",
    errno.EACCES: "not permitted (the MEO needs CAP_NET_ADMIN)",
    errno.ESRCH: "the app instance's process is gone",
    errno.ENOENT: "the app instance or a link it needs is gone",
    errno.ENODEV: "a link it needs is gone",
    errno.EINVAL: "the kernel refused the link's settings",
    errno.ENOMEM: "the kernel is out of memory",
    errno.ENOBUFS: "the kernel is out of memory",
}


def _reason(exc: BaseException) -> str:
    """What a netlink or OS error means for the step, in our words."""
    if isinstance(exc, NetlinkError):
        code = exc.code
    elif isinstance(exc, OSError):
        code = exc.errno
    else:
        return "an unexpected error"
    if code in _REASONS:
        return _REASONS[code]
    return f"the kernel refused it (error {code})" if code else "an unexpected error"


def setup_overlay(
    names: LinkNames,
    *,
    vni: int,
    port: int,
    local_ip: str,
    remote_ip: str,
    attachments: Sequence[Attachment],
    fail_after: Callable[[str], None] | None = None,
    tracer: Tracer | None = None,
) -> list[str]:
    """Builds bridge, VXLAN and one veth per attachment; all or nothing.

    On any failure every link made so far is removed and DeploymentFailed
    raised, naming the step that failed and why (the kernel's own text goes
    to the log). ``fail_after(step)`` is a test hook called after each step.
    Returns the host-side link names, each carrying ``names.alias``."""
    federation_id = names.key or names.tag
    alias = names.alias
    step = "start"

    def span(name: str, **attributes: Any) -> AbstractContextManager[Any]:
        if tracer is None:
            return nullcontext()
        return tracer.start_as_current_span(name, attributes=attributes)

    try:
        with IPRoute() as ipr:
            if ipr.link_lookup(ifname=names.bridge):
                raise DeploymentFailed(f"overlay of federation {federation_id} already exists")
            mtu = _underlay_mtu(ipr, local_ip) - VXLAN_OVERHEAD
            step = f"bridge {names.bridge}"
            with span("bridge", bridge=names.bridge, mtu=mtu):
                ipr.link("add", ifname=names.bridge, kind="bridge")
                br = ipr.link_lookup(ifname=names.bridge)[0]
                ipr.link("set", index=br, mtu=mtu, state="up", ifalias=alias)
            if fail_after:
                fail_after("bridge")
            step = f"VXLAN link {names.vxlan} (VNI {vni}, UDP port {port}, towards {remote_ip})"
            with span("vxlan", vni=vni, udp_port=port, remote=remote_ip, local=local_ip):
                ipr.link(
                    "add",
                    ifname=names.vxlan,
                    kind="vxlan",
                    vxlan_id=vni,
                    vxlan_port=port,
                    vxlan_group=remote_ip,  # unicast remote: one peer, no multicast
                    vxlan_local=local_ip,
                    vxlan_learning=1,
                )
                vx = ipr.link_lookup(ifname=names.vxlan)[0]
                ipr.link("set", index=vx, master=br, mtu=mtu, state="up", ifalias=alias)
            if fail_after:
                fail_after("vxlan")
            for i, att in enumerate(attachments):
                step = f"veth {names.veth(i)} into app instance {i} (pid {att.pid})"
                with span("veth", veth=names.veth(i), pid=att.pid, ip=str(att.ip)):
                    ipr.link("add", ifname=names.veth(i), kind="veth", peer=names.veth_tmp_peer(i))
                    host_end = ipr.link_lookup(ifname=names.veth(i))[0]
                    peer = ipr.link_lookup(ifname=names.veth_tmp_peer(i))[0]
                    ipr.link("set", index=host_end, master=br, mtu=mtu, state="up", ifalias=alias)
                    ipr.link("set", index=peer, net_ns_pid=att.pid)
                    run_in_netns(
                        att.netns_path,
                        partial(_configure_peer, names.veth_tmp_peer(i), att.ip, mtu),
                    )
                if fail_after:
                    fail_after(f"veth{i}")
        return links_of(names)
    except BaseException as exc:
        try:
            made = teardown(names)
        except Exception:
            log.exception("could not remove the half-made overlay of %s", federation_id)
            made = []
        log.warning("overlay of %s failed at %s (%r); removed %s", federation_id, step, exc, made)
        if isinstance(exc, MecfedError) or not isinstance(exc, Exception):
            raise
        raise DeploymentFailed(
            f"could not set up the overlay of federation {federation_id}: {step}: "
            f"{_reason(exc)}; everything it made was removed"
        ) from exc


@dataclass
class NetworkOps:
    """The host-network operations the orchestrator uses, injectable so
    unit tests need no root. Each blocks: call it via ``asyncio.to_thread``."""

    setup_overlay: Callable[..., list[str]] = setup_overlay
    teardown: Callable[[LinkNames], list[str]] = teardown
    links_of: Callable[[LinkNames], list[str]] = links_of
    existing_vxlans: Callable[[], list[VxlanInfo]] = existing_vxlans
    host_link_names: Callable[[], set[str]] = host_link_names
    owned_links: Callable[[str], dict[str, str]] = owned_links
    delete_links: Callable[[list[str]], None] = delete_links
