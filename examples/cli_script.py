"""A command-line script: import customers from a CSV into people traits, then exit.

A short-lived process needs nothing special: ``with Client(...)`` shuts the client down at the
end of the block, which delivers everything queued (bounded by ``shutdown_timeout``); the
``atexit`` hook would do the same if the script forgot. The exit status tells whether every
operation was delivered.

    python examples/cli_script.py customers.csv                     # SANKOFA_API_KEY / SANKOFA_HOST
    python examples/cli_script.py customers.csv --host http://127.0.0.1:8787 --api-key sk_test_…

The CSV has a ``user_id`` column; every other column becomes a trait (empty cells are skipped).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from typing import Optional

import sankofa_sdk


def import_customers(client: sankofa_sdk.Client, path: str, source: str) -> int:
    """Send one people update per row, and one event for the run. Returns the row count."""
    rows = 0
    with open(path, newline="", encoding="utf-8") as file:
        for row in csv.DictReader(file):
            user_id = (row.pop("user_id", "") or "").strip()
            if not user_id:
                print(f"line {rows + 2}: no user_id, skipped", file=sys.stderr)
                continue
            traits = {key: value for key, value in row.items() if key and value}
            # A script acts for many users: name each one, never rely on a context identity.
            client.people_set({**traits, "imported_from": source}, distinct_id=user_id)
            client.track("Customer Imported", {"source": source}, distinct_id=user_id)
            rows += 1
    return rows


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", help="CSV file with a user_id column")
    parser.add_argument("--api-key", default=os.environ.get("SANKOFA_API_KEY"))
    parser.add_argument("--host", default=os.environ.get("SANKOFA_HOST", "https://api.sankofa.dev"))
    parser.add_argument("--source", default="crm-export")
    args = parser.parse_args(argv)

    with sankofa_sdk.Client(args.api_key, host=args.host, shutdown_timeout=10) as client:
        rows = import_customers(client, args.csv, args.source)
    # Leaving the block shut the client down: everything was delivered or reported.
    stats = client.stats()
    lost = sum(stats["dropped"].values())  # by reason: invalid, unauthorized, ...
    print(f"imported {rows} customers: {stats['delivered']} operations delivered, {lost} lost")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
