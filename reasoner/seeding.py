"""Derived seeds: every random choice of a run comes from the run seed and where it is used,
so a resumed phase draws exactly what the uninterrupted one drew."""

from __future__ import annotations

import hashlib


def derive(*parts: object) -> int:
    """A 31-bit seed from the parts, stable across processes and Python versions."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF
