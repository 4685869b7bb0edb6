"""A backfill script: 200,000 ``people_set`` calls with historical timestamps inside
``with sankofa_sdk.Client(...)``, default options, against the reference server in its own
process at the engine's default rate limit. The block's end delivers everything while delivery
makes progress: before, the 5 s shutdown deadline cut it and 107,999 were dropped.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from .external_server import ExternalServer

CALLS = 200_000

# The README's backfill recipe.
BACKFILL = """
import json, sys
from datetime import datetime, timedelta, timezone
import sankofa_sdk

api_key, host, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
start = datetime(2024, 1, 1, tzinfo=timezone.utc)
with sankofa_sdk.Client(api_key, host=host) as client:
    for i in range(calls):
        client.people_set(
            {"plan": "pro", "seats": i % 50},
            distinct_id=f"customer_{i}",
            timestamp=start + timedelta(minutes=i),   # when it was true, not now
        )
print(json.dumps(client.stats()))
"""


def test_a_backfill_of_200_000_people_updates_is_delivered_whole(
    external: Callable[..., ExternalServer], tmp_path: Path
) -> None:
    engine = external()
    script = tmp_path / "backfill.py"
    script.write_text(textwrap.dedent(BACKFILL), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script), engine.api_key, engine.url, str(CALLS)],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    stats = json.loads(result.stdout.strip().splitlines()[-1])
    assert stats["delivered"] == CALLS, (stats, result.stderr[-3000:])
    assert stats["dropped"] == {} and stats["unknown_fate"] == 0
    assert engine.wait_until_applied()
    assert engine.stats()["people"] == CALLS
