"""Shared type aliases. Time in plait is always integer nanoseconds of the caller's
monotonic clock (`Nanos`); links are numbered by their index in the config (`LinkId`)."""

from __future__ import annotations

from typing import NewType, SupportsIndex, TypeAlias

Nanos = NewType("Nanos", int)
LinkId = NewType("LinkId", int)

#: An int argument of the public API, which the method checks itself (`plait.checks`):
#: callers' type checkers still refuse a float or a str, while the compiled build, for
#: which a protocol may be any object, lets the method raise its `UsageError` instead
#: of mypyc's own TypeError at the call.
IntArg: TypeAlias = SupportsIndex

NS_PER_US = 1_000
NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000
