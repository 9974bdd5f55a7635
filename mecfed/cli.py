"""The ``mecfed`` command line."""

from __future__ import annotations

import argparse
import asyncio
import sys


def _demo(args: argparse.Namespace) -> int:
    from mecfed.demo import DemoOptions, main

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
    return 0


def _mef(args: argparse.Namespace) -> int:
    from mef.server import run

    run(args.config)
    return 0


def _meo(args: argparse.Namespace) -> int:
    from meo.server import run

    run(args.config)
    return 0


def _image(args: argparse.Namespace) -> int:
    from meo.image import build_image

    print(build_image(args.tag))
    return 0


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
    demo.set_defaults(func=_demo)

    tb = sub.add_parser("testbed", help="bring a testbed up or down")
    tb.add_argument("action", choices=("up", "down"))
    testbed_options(tb)
    tb.set_defaults(func=_testbed)

    for name, func, what in (("mef", _mef, "MEC Federator"), ("meo", _meo, "MEC Orchestrator")):
        sp = sub.add_parser(name, help=f"run one {what}")
        sp.add_argument("action", choices=("serve",))
        sp.add_argument("--config", required=True, help="system configuration JSON file")
        sp.set_defaults(func=func)

    img = sub.add_parser("image", help="build the test app image locally (no registry)")
    img.add_argument("action", choices=("build",))
    img.add_argument("--tag", default="mecfed/echo:1")
    img.set_defaults(func=_image)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
