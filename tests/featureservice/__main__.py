"""Command line: `python -m tests.featureservice --data DIR --port 0 --seed demo
[--user alice:secret ...] [--large N] [--map-areas]` prints the base URL and serves until interrupted."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from .server import ReferenceServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.featureservice", description=__doc__)
    parser.add_argument(
        "--data", required=True, type=Path, help="data folder (created and seeded if new)"
    )
    parser.add_argument("--port", type=int, default=0, help="port (0 = any free port)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--seed", default="demo", help="'demo' or 'none'")
    parser.add_argument(
        "--user", action="append", default=[], metavar="NAME:PASSWORD", help="turns token auth on"
    )
    parser.add_argument(
        "--large", type=int, default=0, metavar="N", help="add the 'Large' service with N points"
    )
    parser.add_argument(
        "--map-areas",
        action="store_true",
        help="prepare the demo web map's preplanned map areas and packages "
        "(refresh them with `python -m tests.featureservice.packages refresh --data DIR`)",
    )
    args = parser.parse_args(argv)
    users = {}
    for item in args.user:
        name, sep, password = item.partition(":")
        if not sep or not name:
            parser.error(f"--user needs NAME:PASSWORD, got {item!r}")
        users[name] = password
    server = ReferenceServer(
        args.data, seed=args.seed, users=users, port=args.port, large=args.large, host=args.host
    )
    if args.map_areas:
        server.prepare_map_areas()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
