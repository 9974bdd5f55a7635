"""App-to-app traffic check over the overlay.

A UDP socket is created *inside* the consumer app instance's network
namespace (thread setns → socket() → setns back; a socket stays in the
namespace it was made in), then echoes are sent to every provider app's echo
port and loss and round-trip times measured. Targets are probed concurrently,
one thread each, so the total time is bounded by one target's series.
The series run on an executor of their own: runtime liveness keeps many of
them going for seconds each, and the default executor also carries every
VIM and netlink call, which must not queue behind them.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from concurrent.futures import ThreadPoolExecutor

from mecfed.model import TrafficCheck, TrafficReport
from meo.nsutil import run_in_netns

_HEADER = struct.Struct("!8sQ")  # magic, sequence number
_MAGIC = b"mecfedpr"
# Before measuring, one echo must come back (resent every WARMUP_RETRY_S, for
# at most WARMUP_S): the first packet into a fresh overlay waits for ARP
# across the tunnel, and a lost ARP request is only retried after 1 s. That
# is set-up, not the app-to-app loss the check is about; the 20 measured
# echoes that follow must all come back.
WARMUP_S = 2.0
WARMUP_RETRY_S = 0.2
_WARMUP_SEQ = 2**64 - 1
_SERIES = ThreadPoolExecutor(max_workers=64, thread_name_prefix="probe")


def _socket_in(netns_path: str) -> socket.socket:
    return run_in_netns(netns_path, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))


def _warm_up(sock: socket.socket, budget_s: float) -> float:
    """Seconds until a warm-up echo came back (``budget_s`` if none did)."""
    payload = _HEADER.pack(_MAGIC, _WARMUP_SEQ)
    start = time.perf_counter()
    end = start + budget_s
    while (now := time.perf_counter()) < end:
        retry_at = min(end, now + WARMUP_RETRY_S)
        try:
            sock.send(payload)
            while (left := retry_at - time.perf_counter()) > 0:
                sock.settimeout(left)
                if sock.recv(2048)[: _HEADER.size] == payload:
                    return time.perf_counter() - start
        except TimeoutError:
            continue
        except OSError:  # e.g. ECONNREFUSED while the far end is not there yet
            time.sleep(max(0.0, retry_at - time.perf_counter()))
    return budget_s


def _series(
    sock: socket.socket, target: tuple[str, int], count: int, interval_s: float, timeout_s: float
) -> TrafficReport:
    rtts: list[float] = []
    with sock:
        sock.connect(target)  # only replies from the target reach this socket
        warmup_s = _warm_up(sock, WARMUP_S)
        for seq in range(count):
            payload = _HEADER.pack(_MAGIC, seq)
            start = time.perf_counter()
            try:
                sock.send(payload)
            except OSError:
                continue  # e.g. ECONNREFUSED from an earlier ICMP: counts as loss
            deadline = start + timeout_s
            while (left := deadline - time.perf_counter()) > 0:
                sock.settimeout(left)
                try:
                    data = sock.recv(2048)
                except (TimeoutError, OSError):
                    break
                if data[: _HEADER.size] == payload[: _HEADER.size]:
                    rtts.append((time.perf_counter() - start) * 1000.0)
                    break
                # a late reply to an earlier probe: ignore and keep waiting
            if interval_s and seq + 1 < count:
                time.sleep(interval_s)
    return TrafficReport(
        sent=count,
        received=len(rtts),
        rtt_ms=sum(rtts) / len(rtts) if rtts else 0.0,
        rtt_max_ms=max(rtts, default=0.0),
        warmup_ms=warmup_s * 1000.0,
    )


async def probe(netns_path: str, targets: list[str], check: TrafficCheck) -> TrafficReport:
    """Sends ``check.count`` echoes to each target's ``check.echo_port``
    from inside ``netns_path``."""

    async def one(ip: str) -> TrafficReport:
        loop = asyncio.get_running_loop()
        sock = await loop.run_in_executor(_SERIES, _socket_in, netns_path)
        return await loop.run_in_executor(
            _SERIES,
            _series,
            sock,
            (ip, check.echo_port),
            check.count,
            check.interval_ms / 1000.0,
            check.timeout_ms / 1000.0,
        )

    return TrafficReport.merge(list(await asyncio.gather(*(one(ip) for ip in targets))))
