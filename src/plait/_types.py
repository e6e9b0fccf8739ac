"""Shared type aliases. Time in plait is always integer nanoseconds of the caller's
monotonic clock (`Nanos`); links are numbered by their index in the config (`LinkId`)."""

from __future__ import annotations

from typing import NewType

Nanos = NewType("Nanos", int)
LinkId = NewType("LinkId", int)

NS_PER_US = 1_000
NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000
