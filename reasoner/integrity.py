"""Fingerprints of artefacts (size and sha256), recorded in the manifest when a phase completes
and checked when a run resumes, so a deleted, truncated or edited artefact is noticed and its
phase redone instead of being skipped as complete."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK = 1 << 20


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def fingerprint(path: Path) -> dict[str, int | str]:
    """``{"size": bytes, "sha256": hex}`` of a file, or of a folder: its files' sizes summed and
    the sha256 of its sorted ``relative path, file sha256`` lines (names and contents count)."""
    path = Path(path)
    if path.is_file():
        return {"size": path.stat().st_size, "sha256": _file_sha256(path)}
    lines, size = [], 0
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        size += f.stat().st_size
        lines.append(f"{f.relative_to(path).as_posix()}\0{_file_sha256(f)}\n")
    return {"size": size, "sha256": hashlib.sha256("".join(lines).encode()).hexdigest()}


def problem(path: Path, expected: dict) -> str | None:
    """Why ``path`` no longer matches ``expected`` (a fingerprint), or None when it does."""
    path = Path(path)
    if not path.exists():
        return "is missing"
    got = fingerprint(path)
    if got["size"] != expected.get("size"):
        return f"changed size ({expected.get('size')} -> {got['size']} bytes)"
    if got["sha256"] != expected.get("sha256"):
        return "changed content (sha256 differs)"
    return None
