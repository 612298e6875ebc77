"""Time-ordered identifiers.

Task ids sort by creation time (48-bit millisecond timestamp, then randomness, UUIDv7
layout), so "newest first" pagination is an index range scan on the primary key and a
cursor is just the last id seen.
"""

from __future__ import annotations

import os
import time
import uuid

_last = 0


def new_id() -> str:
    """A UUIDv7 string: sortable by creation time, unique across processes."""
    global _last
    ms = time.time_ns() // 1_000_000
    # Never go backwards when the wall clock does (NTP steps), so new ids sort last.
    ms = max(ms, _last)
    _last = ms
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | rand
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return str(uuid.UUID(int=value))
