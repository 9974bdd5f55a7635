"""RSS of a process using mecfed.chain the way a chain MEF does.

``python -m tests.chain.rss_probe WS_URL PRIVATE_KEY`` imports the package,
connects one ChainClient, deploys the Federation contract, keeps five live
event streams and a heads stream open, sends 40 transactions (20 at once)
and prints one JSON line of RSS figures in MiB.
"""

from __future__ import annotations

import asyncio
import json
import sys

import psutil


def _mib() -> float:
    return psutil.Process().memory_info().rss / 2**20


async def _main(url: str, key: str) -> dict[str, float]:
    figures = {"python": _mib()}
    from eth_account import Account

    from mecfed.chain import ChainClient, FederationContract, Windows
    from mecfed.chain.sealing import pubkey_of

    figures["imported"] = _mib()
    account = Account.from_key(key)
    async with await ChainClient.connect(url, account) as client:
        fed = await FederationContract.deploy(client, members=[account.address])
        await fed.register("probe", pubkey_of(account))
        streams = [
            fed.events(["ServiceAnnounced"]),
            fed.events(["BidPlaced"], consumer=account.address),
            fed.events(["ConsumerEndpoint"], provider=account.address),
            fed.events(["DeploymentConfirmed"], consumer=account.address),
            fed.events(["ServiceTerminated"]),
        ]
        heads = client.heads()
        for stream in streams:
            await stream.wait_live()
        figures["connected"] = _mib()
        for _ in range(2):
            await asyncio.gather(*(fed.announce(10, 1, Windows(60), b"{}") for _ in range(20)))
        for _ in range(40):
            await asyncio.wait_for(streams[0].__anext__(), 10)
        figures["after_transactions"] = _mib()
        await heads.close()
    return figures


if __name__ == "__main__":
    print(json.dumps(asyncio.run(_main(sys.argv[1], sys.argv[2]))))
