"""The traffic probe's series on loopback sockets: the warm-up absorbs a
path that drops its first packets (ARP across a fresh tunnel), while loss
after it still counts."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from meo import probe


@pytest.fixture
def echo_server() -> Iterator[tuple[tuple[str, int], dict[str, int]]]:
    """A UDP echo server that drops the first ``drop_first`` datagrams and
    every datagram once ``answer_until`` have been answered."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))
    srv.settimeout(0.1)
    knobs = {"drop_first": 0, "answer_until": 10**9, "seen": 0, "answered": 0}
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = srv.recvfrom(2048)
            except TimeoutError:
                continue
            knobs["seen"] += 1
            if knobs["seen"] <= knobs["drop_first"] or knobs["answered"] >= knobs["answer_until"]:
                continue
            knobs["answered"] += 1
            srv.sendto(data, peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield srv.getsockname(), knobs
    stop.set()
    thread.join()
    srv.close()


def _client() -> socket.socket:
    return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


def test_first_packets_lost_to_path_setup_do_not_count(echo_server) -> None:
    target, knobs = echo_server
    knobs["drop_first"] = 2  # as if the first ARP request was lost
    report = probe._series(_client(), target, 20, 0.001, 0.5)
    assert (report.sent, report.received) == (20, 20)
    assert report.warmup_ms >= 2 * probe.WARMUP_RETRY_S * 1000 * 0.9


def test_loss_after_the_warm_up_still_counts(echo_server) -> None:
    target, knobs = echo_server
    knobs["answer_until"] = 1 + 15  # the warm-up echo, then 15 of 20
    report = probe._series(_client(), target, 20, 0.001, 0.05)
    assert (report.sent, report.received) == (20, 15)
    assert report.loss == pytest.approx(0.25)


def test_silent_target_fails_after_the_bounded_warm_up(echo_server, monkeypatch) -> None:
    target, knobs = echo_server
    knobs["answer_until"] = 0
    monkeypatch.setattr(probe, "WARMUP_S", 0.3)
    report = probe._series(_client(), target, 5, 0.001, 0.05)
    assert report.received == 0
    assert report.warmup_ms == pytest.approx(300, rel=0.01)
