"""Timestamps as the API server writes them."""

from __future__ import annotations

import datetime as dt


def now() -> str:
    """RFC 3339 to the second (pod conditions, container states)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    """RFC 3339 with microseconds (a Lease's renewTime is a MicroTime)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
