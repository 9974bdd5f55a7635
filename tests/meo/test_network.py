"""The overlay set-up against the real kernel, in a network namespace of
its own: netlink refusals reach the caller in our words (which step, why),
and whatever was made before the failure is gone."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from functools import partial

import pytest
from meo_helpers import NETNS_DIR, PREFIX, _need_root
from pyroute2 import IPRoute

from mecfed.errors import DeploymentFailed
from meo import network
from meo.nsutil import create_netns, run_in_netns

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

LOCAL, REMOTE = "10.217.250.1", "10.217.250.2"
NO_SUCH_PID = 4_194_304  # above the kernel's largest pid_max: never a process


@pytest.fixture
def host() -> Iterator[str]:
    """A fresh namespace with an underlay address (on a veth: no dummy module here)."""
    _need_root()
    from pyroute2 import netns

    name = f"{PREFIX}n{secrets.token_hex(3)}"
    create_netns(name)
    path = f"{NETNS_DIR}/{name}"

    def underlay() -> None:
        with IPRoute() as ipr:
            ipr.link("add", ifname="uplink", kind="veth", peer="uplinkp")
            idx = ipr.link_lookup(ifname="uplink")[0]
            ipr.addr("add", index=idx, address=LOCAL, prefixlen=24)
            ipr.link("set", index=idx, state="up")

    try:
        run_in_netns(path, underlay)
        yield path
    finally:
        with contextlib.suppress(Exception):
            netns.remove(name)


INSTALLATION = "0123456789abcdef"


def _names(fed: str, installation: str = INSTALLATION) -> network.LinkNames:
    return network.LinkNames(installation, network.first_tag(fed), fed)


def _setup(path: str, fed: str, installation: str = INSTALLATION, **kw: object) -> list[str]:
    args = dict(vni=4242, port=4800, local_ip=LOCAL, remote_ip=REMOTE, attachments=())
    args.update(kw)
    return run_in_netns(path, partial(network.setup_overlay, _names(fed, installation), **args))


def _links(path: str, fed: str) -> list[str]:
    return run_in_netns(path, partial(network.links_of, _names(fed)))


def test_a_vanished_instance_is_reported_in_our_words(host):
    gone = network.Attachment(NO_SUCH_PID, "/proc/4194304/ns/net", _ip("172.30.9.129/24"))
    with pytest.raises(DeploymentFailed) as err:
        _setup(host, "fed-a", attachments=[gone])
    text = err.value.message
    assert "could not set up the overlay of federation fed-a" in text
    assert f"into app instance 0 (pid {NO_SUCH_PID})" in text
    assert "the app instance's process is gone" in text
    assert "NetlinkError" not in text and "No such process" not in text
    assert _links(host, "fed-a") == []  # bridge and VXLAN were made, then removed


def test_a_taken_vni_and_port_is_reported_in_our_words(host):
    def foreign() -> None:
        with IPRoute() as ipr:
            ipr.link("add", ifname="other0", kind="vxlan", vxlan_id=4242, vxlan_port=4800)

    run_in_netns(host, foreign)
    with pytest.raises(DeploymentFailed) as err:
        _setup(host, "fed-b")
    text = err.value.message
    assert "VXLAN link" in text and "VNI 4242, UDP port 4800" in text
    assert "already exists on this host" in text
    assert "File exists" not in text
    assert _links(host, "fed-b") == []


def test_a_working_set_up_and_its_teardown(host):
    links = _setup(host, "fed-c")
    assert len(links) == 2 and _links(host, "fed-c") == links
    vxlans = run_in_netns(host, network.existing_vxlans)
    assert [(v.vni, v.port) for v in vxlans] == [(4242, 4800)]
    assert all(len(n) <= network.IFNAMSIZ for n in links)
    owned = run_in_netns(host, partial(network.owned_links, INSTALLATION))
    assert owned == {n: _names("fed-c").tag for n in links}  # found by alias
    assert sorted(run_in_netns(host, partial(network.teardown, _names("fed-c")))) == sorted(links)
    assert _links(host, "fed-c") == []


def test_links_of_another_installation_are_never_ours(host):
    """Even when the short names collide, the alias (full installation id)
    decides: teardown and the orphan sweep leave the other's links alone."""
    # Another installation whose 4-hex-digit name prefix is the same as ours.
    other = next(
        f"{i:016x}"
        for i in range(1 << 20)
        if network.installation_prefix(f"{i:016x}") == network.installation_prefix(INSTALLATION)
        and f"{i:016x}" != INSTALLATION
    )
    theirs = _setup(host, "fed-d", installation=other)
    assert sorted(theirs) == sorted(
        _names("fed-d").bridge if n.startswith("mfb") else n for n in theirs
    )
    assert run_in_netns(host, partial(network.links_of, _names("fed-d"))) == []
    assert run_in_netns(host, partial(network.teardown, _names("fed-d"))) == []
    assert run_in_netns(host, partial(network.owned_links, INSTALLATION)) == {}
    assert sorted(run_in_netns(host, partial(network.owned_links, other))) == sorted(theirs)


def _ip(text: str):
    import ipaddress

    return ipaddress.IPv4Interface(text)
