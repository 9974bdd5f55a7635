"""``python -m mef --config FILE`` runs one MEC Federator."""

from __future__ import annotations

import argparse

from mef.server import run


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m mef", description=__doc__)
    parser.add_argument("--config", required=True, help="system configuration JSON file")
    run(parser.parse_args().config)


if __name__ == "__main__":
    main()
