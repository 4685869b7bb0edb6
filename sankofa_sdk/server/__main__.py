"""``sankofa-server`` / ``python -m sankofa_sdk.server``: run the reference server from a shell.

Prints the URL, the keys and the console's address (with its token) on start, logs one line per
request, and on SIGINT or SIGTERM stops taking requests, applies everything it accepted to
SQLite, then exits.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Optional

from ._server import DEFAULT_RATE_LIMIT, RateLimit, ReferenceServer


def _rate_limit(text: str) -> RateLimit:
    if text.lower() in ("off", "none", "0"):
        return None
    requests, _, seconds = text.partition("/")
    try:
        limit = (int(requests), int(seconds or 60))
    except ValueError:
        raise argparse.ArgumentTypeError("use N, N/SECONDS or off") from None
    if limit[0] < 1 or limit[1] < 1:
        raise argparse.ArgumentTypeError("requests and seconds must be positive")
    return limit


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sankofa-server",
        description="The Sankofa engine's ingestion API on loopback, with a SQLite People store.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080, 0 = any free)")
    parser.add_argument("--db", default=None, help="SQLite file to keep data in (default: memory)")
    parser.add_argument("--api-key", default=None, help="live key of the project (default: new)")
    parser.add_argument("--test-key", default=None, help="test key of the project (default: new)")
    parser.add_argument(
        "--rate-limit",
        type=_rate_limit,
        default=DEFAULT_RATE_LIMIT,
        help="requests per key: N (per 60 s), N/SECONDS, or off (default 500/60, the engine's)",
    )
    parser.add_argument(
        "--no-rate-limit-headers",
        dest="rate_limit_headers",
        action="store_false",
        help="answer like the hosted engine: no X-RateLimit-* headers, no Retry-After on 429",
    )
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    if args.quiet:
        logging.getLogger("sankofa_sdk.server.access").setLevel(logging.WARNING)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        server = ReferenceServer(
            host=args.host,
            port=args.port,
            db_path=args.db,
            api_key=args.api_key,
            test_api_key=args.test_key,
            rate_limit=args.rate_limit,
            rate_limit_headers=args.rate_limit_headers,
        ).start()
    except (OSError, ValueError) as exc:
        print(f"sankofa-server: cannot start: {exc}", file=sys.stderr)
        return 2
    print(f"Sankofa reference server listening on {server.url}", flush=True)
    print(f"  live key: {server.api_key}", flush=True)
    print(f"  test key: {server.test_api_key}", flush=True)
    print(f"  data:     {args.db or 'in memory (lost on exit)'}", flush=True)
    print(f"  console:  {server.console_url}", flush=True)
    while not stop.wait(0.5):
        pass
    print("stopping: applying what was accepted...", flush=True)
    if not server.stop(timeout=60):
        print("sankofa-server: could not apply everything within 60 s", file=sys.stderr)
        return 1
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
