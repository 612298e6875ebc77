"""Time-ordered identifiers.

Task ids sort by creation time (48-bit millisecond timestamp, then randomness, UUIDv7
layout), so "newest first" pagination is an index range scan on the primary key and a
cursor is just the last id seen.
"""

from __future__ import annotations

import os
import time

_last = 0  # the last id's value: the next one sorts after it
_RAND_B = (1 << 62) - 1  # the low bits, below the variant's


def new_id() -> str:
    """A UUIDv7 string: sortable by creation time, unique across processes. Within one
    millisecond this process's ids are its last one plus one (RFC 9562's monotonic
    random): random ones sorted at random there, and a claim, which takes a queue's
    oldest task first by id, took tasks created in the same millisecond in any order."""
    global _last
    ms = time.time_ns() // 1_000_000
    # Never go backwards when the wall clock does (NTP steps), so new ids sort last.
    last_ms = _last >> 80
    if ms <= last_ms and _last & _RAND_B != _RAND_B:
        value = _last + 1
    else:
        rand = int.from_bytes(os.urandom(10), "big")
        value = (max(ms, last_ms + (ms <= last_ms)) & 0xFFFF_FFFF_FFFF) << 80 | rand
        value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
        value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    _last = value
    # uuid.UUID's str, formatted here: building the UUID object and its __str__ were
    # 2 of the 5 µs (a creation makes two ids: the task's and its audit entry's).
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
