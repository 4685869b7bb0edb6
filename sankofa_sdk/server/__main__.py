"""``sankofa-server`` / ``python -m sankofa_sdk.server``: run the reference server from a shell.

Prints the URL, the keys and the console's address (with its token) on start, logs one line per
request, and on SIGINT or SIGTERM stops taking requests, applies everything it accepted to
SQLite, then exits.

Keys given on the command line are printed masked (the caller has them; a terminal log or a CI
transcript need not), unless ``--show-keys``; keys made for the run are printed once, marked
secret, since there is no other way to learn them. Binding to an address other than loopback
prints a warning on stderr: the keys and the console's token are then the only protection.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import signal
import socket
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


def bind_warning(host: str) -> Optional[str]:
    """The warning to print before listening on ``host``, or None for a loopback address."""
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host or None, None)}
    except (OSError, UnicodeError):
        addresses = set()
    if host and addresses and all(_is_loopback(address) for address in addresses):
        return None
    shown = host or "all interfaces"
    return (
        f"sankofa-server: warning: listening on {shown}, not a loopback address: anyone who can "
        "reach it can send data with the keys and, with the console's token, read it all"
    )


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _shown_key(key: str, given: bool, show: bool) -> str:
    if show:
        return key
    if not given:
        return f"{key} (secret, made for this run)"
    prefix = key[:8] if key.startswith(("sk_live_", "sk_test_")) else ""
    return f"{prefix}…{key[-4:]} (as given; --show-keys prints it)"


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
    parser.add_argument(
        "--no-dedup",
        dest="deduplicate",
        action="store_false",
        help="apply every request as the engine does: a repeated Idempotency-Key is applied "
        "again, not answered from memory (the reference stats still count it as repeated_keys)",
    )
    parser.add_argument(
        "--show-keys",
        action="store_true",
        help="print the keys given with --api-key/--test-key in full (default: masked)",
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
    warning = bind_warning(args.host)
    if warning is not None:
        print(warning, file=sys.stderr, flush=True)
    try:
        server = ReferenceServer(
            host=args.host,
            port=args.port,
            db_path=args.db,
            api_key=args.api_key,
            test_api_key=args.test_key,
            rate_limit=args.rate_limit,
            rate_limit_headers=args.rate_limit_headers,
            deduplicate=args.deduplicate,
        ).start()
    except (OSError, ValueError) as exc:
        print(f"sankofa-server: cannot start: {exc}", file=sys.stderr)
        return 2
    print(f"Sankofa reference server listening on {server.url}", flush=True)
    live = _shown_key(server.api_key, args.api_key is not None, args.show_keys)
    test = _shown_key(server.test_api_key, args.test_key is not None, args.show_keys)
    print(f"  live key: {live}", flush=True)
    print(f"  test key: {test}", flush=True)
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
