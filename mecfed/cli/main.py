"""The ``mecfed`` command line: argument parsing and one handler per
subcommand. Handlers import what they run (servers, testbed, benchmark)
when called, so parsing and ``--help`` stay light."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

# The CLI starts testbed processes (fork + exec) while its own gRPC channels
# and span collector run. gRPC's fork handlers then now and then break the
# child before its exec ("epoll_wait: Bad file descriptor", a server that
# never becomes healthy). The children exec at once and need no fork
# support; gRPC reads this when first imported, which happens after this.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


def _demo(args: argparse.Namespace) -> int:
    from mecfed.cli import extras

    extras.require("ui", "demo")
    from mecfed.cli.demo import DemoOptions, main

    return main(
        DemoOptions(
            backend=args.backend,
            systems=args.systems,
            vim=args.vim,
            image=args.image,
            json=args.json,
            keep=args.keep,
            offer_timeout_ms=args.offer_timeout_ms,
            offers_to_wait_for=args.offers,
            block_time=args.block_time,
            testbed_name=args.testbed,
            subnet=args.subnet,
            otlp_endpoint=args.otlp_endpoint,
            tracing=not args.no_tracing,
        )
    )


def _testbed(args: argparse.Namespace) -> int:
    from mecfed.testbed import Testbed

    testbed = Testbed(name=args.testbed, subnet=args.subnet)
    if args.action == "up":
        state = asyncio.run(
            testbed.up(
                args.systems,
                backend=args.backend,
                vim=args.vim,
                image=args.image,
                block_time=args.block_time,
            )
        )
        for s in state.systems:
            print(f"{s.system_id}\t{s.role}\t{s.underlay_ip}\t{s.config_path}")
    elif args.action == "down":
        asyncio.run(testbed.down())
        print(f"testbed {args.testbed!r} is down")
    else:  # chain-stop, chain-kill, chain-restart, chain-reset: fault injection
        from mecfed.testbed.chain import restart_node, stop_node

        fault = args.action.removeprefix("chain-")
        if fault in ("stop", "kill"):
            asyncio.run(stop_node(testbed, kill=fault == "kill"))
        else:
            asyncio.run(restart_node(testbed, reset=fault == "reset"))
        print(f"testbed {args.testbed!r}: chain {fault} done")
    return 0


def _mef(args: argparse.Namespace) -> int:
    from mef.server import run

    run(args.config)
    return 0


def _meo(args: argparse.Namespace) -> int:
    from meo.server import run

    run(args.config)
    return 0


def _chain(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from mecfed.chain.keystore import create_keystore, load_key

    if args.action == "keystore":
        address = create_keystore(args.keystore, args.password_file)
        print(address)
        return 0

    async def deploy() -> str:
        # The chain client (web3) only for deploying.
        from mecfed.chain.client import ChainClient
        from mecfed.chain.federation import FederationContract, MembershipPolicy

        account = load_key(args.keystore, args.password_file)
        policy = (
            MembershipPolicy.MAJORITY if args.policy == "majority" else MembershipPolicy.ALLOWLIST
        )
        async with await ChainClient.connect(args.ws_url, account) as client:
            contract = await FederationContract.deploy(client, policy, args.member)
            return contract.address

    address = asyncio.run(deploy())
    record = Path(args.record)
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(
        json.dumps({"contract": address, "ws_url": args.ws_url, "policy": args.policy}) + "\n"
    )
    print(address)
    return 0


def _trace(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mecfed.cli.trace_view import TRACE_FILE, find_traces, load_jsonl, render_waterfall

    path = Path(args.file or TRACE_FILE)
    if not path.exists():
        print(f"mecfed trace: no spans at {path}; run `mecfed demo` first", file=sys.stderr)
        return 2
    spans = load_jsonl(path)
    ids = find_traces(spans, "federation_id", args.federation_id) or [
        t for t in {s["trace_id"] for s in spans} if t == args.federation_id
    ]
    if not ids:
        print(f"mecfed trace: no trace for {args.federation_id} in {path}", file=sys.stderr)
        return 2
    print(render_waterfall(spans, ids[-1]))
    return 0


def _image(args: argparse.Namespace) -> int:
    from meo.image import build_image

    print(build_image(args.tag))
    return 0


def _bench(args: argparse.Namespace) -> int:
    from mecfed.cli import extras

    extras.require("bench", "bench")
    from benchmarks.cli import main

    return main(args)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _backends(text: str) -> list[str]:
    out = [x.strip() for x in text.split(",") if x.strip()]
    bad = [b for b in out if b not in ("chain", "direct")]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown backend(s): {', '.join(bad)}")
    return out


def bench_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``mecfed bench`` (read by ``benchmarks.cli.options``)."""
    p.add_argument(
        "--systems",
        type=_ints,
        default=None,
        help="comma-separated N values (default 2,10,15,25,30)",
    )
    p.add_argument("--runs", type=int, default=20, help="runs per point (default 20)")
    p.add_argument("--backend", type=_backends, default=["chain", "direct"], help="chain,direct")
    p.add_argument(
        "--block-time",
        type=_floats,
        default=[5.0],
        help="chain block period(s) in s; a list sweeps, e.g. 5,2,1 (default 5)",
    )
    p.add_argument("--out", default=None, help="results folder (default benchmarks/results/<ts>)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: N=2, 1 run, both backends, block time 1 s",
    )
    p.add_argument("--testbed", default="mfbench", help="testbed name (prefix of its links)")
    p.add_argument("--subnet", default="10.215.0.0/16", help="testbed underlay subnet")
    p.add_argument("--image", default="mecfed/echo:1")
    p.add_argument("--seed", type=int, default=0, help="seed dealing providers' tariff regions")
    p.add_argument("--offer-timeout-ms", type=int, default=3000)
    p.add_argument("--run-timeout", type=float, default=300.0, help="bound on one run, s")
    p.add_argument("--keep", action="store_true", help="leave the last testbed up")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mecfed", description="Federation of ETSI MEC systems")
    sub = p.add_subparsers(dest="command", required=True)

    def testbed_options(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--systems",
            "-n",
            type=int,
            default=2,
            help="number of MEC systems (split 80:20 consumers:providers)",
        )
        sp.add_argument("--backend", choices=("direct", "chain"), default="direct")
        sp.add_argument(
            "--vim",
            choices=("docker", "netns"),
            default="docker",
            help="run apps as Docker containers or as processes in namespaces",
        )
        sp.add_argument("--image", default="mecfed/echo:1", help="app image to federate")
        sp.add_argument("--testbed", default="mecfed", help="testbed name (prefix of its links)")
        sp.add_argument("--subnet", default="10.213.0.0/16", help="testbed underlay subnet")
        sp.add_argument(
            "--block-time",
            type=float,
            default=1.0,
            help="chain backend: block period of the local chain in seconds",
        )

    demo = sub.add_parser("demo", help="bring up a testbed, federate, report, tear down")
    testbed_options(demo)
    demo.add_argument(
        "--json",
        action="store_true",
        help="end stdout with one JSON summary line (progress goes to stderr)",
    )
    demo.add_argument("--keep", action="store_true", help="leave the testbed running")
    demo.add_argument(
        "--offers",
        type=int,
        default=None,
        help="offers to wait for (default: 1 below 10 systems, else 2)",
    )
    demo.add_argument("--offer-timeout-ms", type=int, default=3000)
    demo.add_argument(
        "--otlp-endpoint",
        default=None,
        help="OTLP gRPC collector for traces, e.g. http://127.0.0.1:4317 (Jaeger); "
        "default OTEL_EXPORTER_OTLP_ENDPOINT, else the demo collects spans itself",
    )
    demo.add_argument(
        "--no-tracing", action="store_true", help="export no spans (to measure tracing's cost)"
    )
    demo.set_defaults(func=_demo)

    tb = sub.add_parser("testbed", help="bring a testbed up or down, or fault its chain node")
    tb.add_argument(
        "action",
        choices=("up", "down", "chain-stop", "chain-kill", "chain-restart", "chain-reset"),
        help="chain-restart keeps the chain (state file), chain-reset starts a fresh one",
    )
    testbed_options(tb)
    tb.set_defaults(func=_testbed)

    for name, func, what in (("mef", _mef, "MEC Federator"), ("meo", _meo, "MEC Orchestrator")):
        sp = sub.add_parser(name, help=f"run one {what}")
        sp.add_argument("action", choices=("serve",))
        sp.add_argument("--config", required=True, help="system configuration JSON file")
        sp.set_defaults(func=func)

    chain = sub.add_parser("chain", help="Federation contract tools (any JSON-RPC node, e.g. Besu)")
    chain.add_argument(
        "action",
        choices=("deploy", "keystore"),
        help="deploy: deploy the contract (the key becomes its admin); "
        "keystore: create an encrypted key file",
    )
    chain.add_argument("--ws-url", default="ws://127.0.0.1:8545", help="node WebSocket URL")
    chain.add_argument("--keystore", required=True, help="encrypted key file")
    chain.add_argument("--password-file", required=True, help="file holding its password")
    chain.add_argument(
        "--policy",
        choices=("allowlist", "majority"),
        default="allowlist",
        help="admission: admin-kept allowlist or majority approval",
    )
    chain.add_argument(
        "--member", action="append", default=[], help="address admitted from the start (repeatable)"
    )
    chain.add_argument(
        "--record",
        default="/var/lib/mecfed/chain.json",
        help="where to record the deployed address",
    )
    chain.set_defaults(func=_chain)

    tr = sub.add_parser("trace", help="print a federation's trace as a terminal waterfall")
    tr.add_argument("federation_id", help="federation id (or trace id)")
    tr.add_argument("--file", default=None, help="spans JSONL (default: the last demo's)")
    tr.set_defaults(func=_trace)

    img = sub.add_parser("image", help="build the test app image locally (no registry)")
    img.add_argument("action", choices=("build",))
    img.add_argument("--tag", default="mecfed/echo:1")
    img.set_defaults(func=_image)

    bench = sub.add_parser("bench", help="benchmark federations against the paper's numbers")
    bench_arguments(bench)
    bench.set_defaults(func=_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    from mecfed.errors import MecfedError

    args = parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (MecfedError, ValueError, OSError) as exc:
        # Operators get the message, not a traceback.
        message = exc.message if isinstance(exc, MecfedError) else str(exc)
        print(f"mecfed {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


__all__ = ["bench_arguments", "main", "parser"]
