"""Time-ordered identifiers.

Task ids sort by creation time (48-bit millisecond timestamp, then randomness, UUIDv7
layout), so "newest first" pagination is an index range scan on the primary key and a
cursor is just the last id seen.
"""

from __future__ import annotations

import os
import time

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
    # uuid.UUID's str, formatted here: building the UUID object and its __str__ were
    # 2 of the 5 µs (a creation makes two ids: the task's and its audit entry's).
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
