"""The workload every SDK gets: one event with 10 properties and one people update with 8 traits.

Each call gets freshly built dicts, as an app building them per request would; building them
happens outside the timed region.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

EVENT_NAME = "Viewed Pricing"
SIGNED_UP_AT = datetime(2026, 3, 14, 15, 9, 26, 535000, tzinfo=timezone.utc)
DISTINCT_IDS = [f"user_{i:05d}" for i in range(1000)]
EMAILS = [f"ada.{i}@example.com" for i in range(1000)]


def event_properties(i: int) -> dict[str, Any]:
    """10 properties of mixed types: str, float, int, bool, None, list, datetime, nested dict."""
    return {
        "plan": "pro",
        "price": 49.99,
        "seats": i % 50,
        "annual": False,
        "coupon": None,
        "tags": ["pricing", "experiment-b"],
        "signed_up_at": SIGNED_UP_AT,
        "referrer": "https://www.example.com/blog/launch?utm_source=newsletter",
        "request_n": i,
        "meta": {"source": "ads", "campaign": "spring-2026", "depth": 2},
    }


def people_traits(i: int) -> dict[str, Any]:
    """8 traits of mixed types, including a datetime and a nested dict."""
    return {
        "email": EMAILS[i % 1000],
        "name": "Ada Lovelace",
        "plan": "pro",
        "seats": i % 50,
        "verified": True,
        "ltv": 1234.5,
        "created_at": SIGNED_UP_AT,
        "company": {"name": "Analytical Engines", "size": 12},
    }


def distinct_id(i: int) -> str:
    return DISTINCT_IDS[i % 1000]
