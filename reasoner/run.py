"""The run directory: the only module that reads and writes it.

    runs/NAME/config.toml      resolved config, written once (changes only through --set)
    runs/NAME/manifest.json    per iteration and phase: status, started, finished, artefacts, metrics
    runs/NAME/metrics.jsonl    one line per logged event
    runs/NAME/iter_0001/...    the phases' artefacts

Every write is atomic (`reasoner.atomic`: temporary file in the same folder, fsync, rename), so
a SIGKILL leaves either the old file or the new one. A phase is marked complete only after its
artefacts exist.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from reasoner import config as cfg
from reasoner import integrity, writer_lock
from reasoner.atomic import atomic_dir, atomic_write_bytes, atomic_write_json, atomic_write_jsonl, atomic_write_text
from reasoner.errors import UserError
from reasoner.ranks import Ranks, barrier, shared_dir
from reasoner.records import R, iter_jsonl

PENDING, RUNNING, COMPLETE = "pending", "running", "complete"
FAILED, INTERRUPTED = "failed", "interrupted"  # a phase that raised; one whose process died


class RunError(UserError, ValueError):
    """A run directory that cannot be used as asked (config mismatch, missing phase output)."""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


# ------------------------------------------------------------------------------ run folder
class RunDir:
    """A run folder. Under a launcher (`reasoner.ranks`) only rank 0 writes it; every other
    rank opens it as a follower, which reads the same artefacts and whose manifest and metrics
    writes are skipped."""

    def __init__(self, path: str | Path, ranks: Ranks | None = None):
        self.path = Path(path)
        self.ranks = ranks or Ranks()
        self.delegated = False  # the lock is held by the `iterate` that launched this process
        self.config_path = self.path / "config.toml"
        self.manifest_path = self.path / "manifest.json"
        self.metrics_path = self.path / "metrics.jsonl"
        self.lock_path = self.path / "lock"
        self.created_here = False  # set by the CLI's opener when this command made the run
        self.board = None  # a TensorBoard view of the metrics, when run.report_to asks (see `open`)

    # ------------------------------------------------------------------------------ config
    def exists(self) -> bool:
        return self.config_path.exists()

    @property
    def follower(self) -> bool:
        return not self.ranks.main

    def open(
        self, config: cfg.Config, overrides: list[str] | None = None, launched_by: str | None = None
    ) -> cfg.Config:
        """Take the run's writer lock, then create the run with ``config`` or check ``config``
        against the saved one (`close` releases the lock; so does the process's death).

        A resumed run may only change keys that a ``--set`` names; the change is recorded in
        the manifest and the saved config is updated. Returns the config to use.

        ``launched_by`` (``PID@HOST``): the `iterate` holding the lock started this process
        through a launcher and waits for it; rank 0 writes under that lock instead of taking
        it. A follower rank takes no lock and needs the run to exist.
        """
        if self.follower:
            if not self.exists():
                raise RunError(f"{self.path} is not a run: rank 0 of a launched job writes only to an existing run")
            return config
        if launched_by is not None:
            holder = self.writer()
            if holder is None or f"{holder.pid}@{holder.host}" != launched_by:
                raise RunError(f"{self.path}: launched by {launched_by}, but the run's lock is not held by it")
            self.delegated = True
            return self._open_locked(config, overrides)
        created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            writer_lock.acquire(self.lock_path)
        except writer_lock.LockHeld:
            if created:
                shutil.rmtree(self.path, ignore_errors=True)
            raise
        try:
            return self._open_locked(config, overrides)
        except BaseException:
            self.close()
            raise

    def _open_locked(self, config: cfg.Config, overrides: list[str] | None) -> cfg.Config:
        from reasoner import board

        if board.wanted(config.run.report_to):
            self.board = board.Board(self.path / "tensorboard", self.metrics())
        if not self.exists():
            atomic_write_text(self.config_path, cfg.to_toml(config))
            manifest = self.manifest()
            manifest["created"] = _now()
            self._save_manifest(manifest)
            return config
        self.remove_stale_temporaries()
        saved = self.saved_config()
        changes = cfg.diff(saved, config)
        named = cfg.override_keys(overrides or [])
        refused = sorted(set(changes) - named)
        if refused:
            lines = ", ".join(f"{k}: {changes[k][0]!r} -> {changes[k][1]!r}" for k in refused)
            raise RunError(
                f"{self.config_path}: the config differs from the run's saved config ({lines}); "
                "name each change with --set section.key=value to accept it"
            )
        if changes:
            manifest = self.manifest()
            manifest.setdefault("config_changes", []).append(
                {"at": _now(), "changes": {k: list(v) for k, v in changes.items()}}
            )
            atomic_write_text(self.config_path, cfg.to_toml(config))
            self._save_manifest(manifest)
        return config

    def close(self) -> None:
        """Release the writer lock taken by `open` (a no-op when this process holds none)."""
        self.delegated = False
        if self.board is not None:
            self.board.close()
            self.board = None
        writer_lock.release(self.lock_path)

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def writer(self) -> writer_lock.Holder | None:
        """The live process that holds this run's writer lock, if any."""
        return writer_lock.live_holder(self.lock_path)

    def remove_stale_temporaries(self) -> None:
        """Delete temporary files and folders that a killed write left behind (names starting
        with a dot: `.NAME.XXXX.tmp`, `.NAME.XXXX/`, `.NAME.old/`); they never hold the only
        copy of anything, since a write renames its temporary into place as its last act.
        Only the lock holder calls this, so no live writer owns what it deletes."""
        if not (writer_lock.held_here(self.lock_path) or self.delegated):
            raise RunError(f"{self.path}: only the run's writer may remove temporaries")
        for path in sorted(self.path.rglob(".*"), key=lambda p: -len(p.parts)):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            elif path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)

    def saved_config(self) -> cfg.Config:
        if not self.exists():
            raise RunError(f"{self.path} is not a run (no config.toml); start one with `reasoner iterate`")
        return cfg.load(self.config_path, warn=False)

    # ---------------------------------------------------------------------------- manifest
    def manifest(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            return {"version": 1, "iterations": {}, "config_changes": []}
        return json.loads(self.manifest_path.read_text(encoding="utf-8"))

    def _save_manifest(self, manifest: dict[str, Any]) -> None:
        if self.follower:
            return
        atomic_write_json(self.manifest_path, manifest)

    def phase(self, iteration: int, name: str) -> dict[str, Any]:
        return self.manifest()["iterations"].get(str(iteration), {}).get(name, {"status": PENDING})

    def is_complete(self, iteration: int, name: str) -> bool:
        return self.phase(iteration, name).get("status") == COMPLETE

    def status(self, iteration: int, name: str, writer: writer_lock.Holder | None = None) -> str:
        """The phase's status as a user should read it: a phase left ``running`` by a process
        that no longer holds the lock is ``interrupted``. Pass ``writer`` (from `writer`) when
        asking about many phases, to probe the lock once."""
        status = self.phase(iteration, name).get("status", PENDING)
        if status == RUNNING and (writer or self.writer()) is None:
            return INTERRUPTED
        return status

    def begin_phase(self, iteration: int, name: str, keep_steps_upto: int | None = None) -> None:
        """Mark a phase running and drop metrics it logged past its resume point."""
        self.truncate_metrics(iteration, name, keep_steps_upto)
        manifest = self.manifest()
        entry = manifest["iterations"].setdefault(str(iteration), {}).setdefault(name, {})
        entry.update(status=RUNNING, started=entry.get("started") or _now())
        entry.pop("error", None)
        self._save_manifest(manifest)

    def end_phase(self, iteration: int, name: str, status: str, reason: str) -> None:
        """Mark a phase that did not complete: ``failed`` (it raised) or ``interrupted``."""
        manifest = self.manifest()
        entry = manifest["iterations"].setdefault(str(iteration), {}).setdefault(name, {})
        entry.update(status=status, error=reason, stopped=_now())
        self._save_manifest(manifest)

    def complete_phase(self, iteration: int, name: str, artefacts: list[str], metrics: dict[str, Any]) -> None:
        for rel in artefacts:
            if not (self.path / rel).exists():
                raise RunError(f"phase {name} of iteration {iteration} did not produce {rel}")
        checksums = {rel: integrity.fingerprint(self.path / rel) for rel in artefacts}
        self.log({"iteration": iteration, "phase": name, "event": "phase_complete", **metrics})
        manifest = self.manifest()
        entry = manifest["iterations"].setdefault(str(iteration), {}).setdefault(name, {})
        for key in ("error", "stopped", "redo"):
            entry.pop(key, None)
        entry.update(status=COMPLETE, finished=_now(), artefacts=artefacts, metrics=metrics, checksums=checksums)
        self._save_manifest(manifest)

    # --------------------------------------------------------------------------- integrity
    def broken(self, order: list[tuple[int, str]], writes: dict[str, tuple[str, ...]]) -> tuple[int, str, str] | None:
        """The first complete phase, in ``order``, whose artefacts are missing or changed, as
        ``(iteration, phase, why)``; None when every complete phase is intact.

        Several phases may rewrite one file (verify and label rewrite rollouts.jsonl), so a file
        is checked against the last complete phase that wrote it, and a mismatch sends the redo
        back to the first phase of the iteration that writes it (the later ones read it in
        place). A file that a started or redo-marked, unfinished phase declares in ``writes`` is
        not checked: that phase may have replaced it before it stopped, and it runs again anyway.
        """
        expected: dict[str, tuple[dict, int, str]] = {}  # rel -> (fingerprint, iteration, phase)
        first_writer: dict[str, tuple[int, str]] = {}
        unsettled: set[str] = set()
        for k, name in order:
            entry = self.phase(k, name)
            status = entry.get("status", PENDING)
            if status == COMPLETE:
                for rel in entry.get("artefacts", []):
                    first_writer.setdefault(rel, (k, name))
                    expected[rel] = (entry.get("checksums", {}).get(rel), k, name)
            elif status != PENDING or "redo" in entry:  # it ran (or began) and may have rewritten files
                unsettled.update(self.rel(self.artefact(k, w)) for w in writes.get(name, ()))
        position = {point: i for i, point in enumerate(order)}
        found: list[tuple[int, tuple[int, str, str]]] = []
        for rel, (fp, _k, name) in expected.items():
            if rel in unsettled:
                continue
            why = (
                integrity.problem(self.path / rel, fp) if fp else (None if (self.path / rel).exists() else "is missing")
            )
            if why:
                k0, first = first_writer[rel]
                found.append((position[(k0, first)], (k0, first, f"{rel} {why} since {name} completed")))
        return min(found)[1] if found else None

    def invalidate(self, points: list[tuple[int, str]], reason: str, scratch: dict[str, tuple[str, ...]]) -> int:
        """Mark the phases at ``points`` pending (to run again) and remove their partial state
        (``scratch``: chunk parts, train_state). Their artefacts stay until new ones replace
        them. Returns how many phases had started."""
        manifest = self.manifest()
        changed = 0
        for k, name in points:
            entry = manifest["iterations"].get(str(k), {}).get(name)
            for rel in scratch.get(name, ()):
                shutil.rmtree(self.artefact(k, rel), ignore_errors=True)
            if not entry or entry.get("status", PENDING) == PENDING:
                continue
            changed += 1
            entry.update(status=PENDING, redo={"at": _now(), "reason": reason})
            for key in ("error", "stopped", "finished", "started"):
                entry.pop(key, None)
        self._save_manifest(manifest)
        return changed

    # ----------------------------------------------------------------------------- metrics
    def log(self, event: dict[str, Any]) -> None:
        """Append one metrics line (with a timestamp) and fsync it."""
        if self.follower:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        event = {**event, "time": time.time()}
        line = json.dumps(event, sort_keys=True) + "\n"
        with open(self.metrics_path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        if self.board is not None:
            self.board.write(event)

    def metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        out = []
        for line in self.metrics_path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a kill mid-append; it is rewritten on resume
        return out

    def truncate_metrics(self, iteration: int, phase: str, keep_steps_upto: int | None) -> None:
        """Drop lines of (iteration, phase) logged after the point a resumed phase restarts
        from, so a resumed run's metrics equal an uninterrupted run's."""

        def keep(e: dict[str, Any]) -> bool:
            if e.get("iteration") != iteration or e.get("phase") != phase:
                return True
            step = e.get("step")
            return keep_steps_upto is not None and step is not None and step <= keep_steps_upto

        if self.follower:
            return
        events = self.metrics()
        kept = [e for e in events if keep(e)]
        raw = self.metrics_path.read_text(encoding="utf-8") if self.metrics_path.exists() else ""
        if len(kept) != len(events) or (raw and not raw.endswith("\n")):
            atomic_write_text(self.metrics_path, "".join(json.dumps(e, sort_keys=True) + "\n" for e in kept))

    # ---------------------------------------------------------------------------- artefacts
    def iter_dir(self, iteration: int) -> Path:
        return self.path / f"iter_{iteration:04d}"

    def artefact(self, iteration: int, name: str) -> Path:
        return self.iter_dir(iteration) / name

    def rel(self, path: Path) -> str:
        return str(Path(path).relative_to(self.path))

    def write_records(self, iteration: int, name: str, records: Iterable[Any]) -> str:
        self._writer_only(name)
        path = self.artefact(iteration, name)
        atomic_write_jsonl(path, records)
        return self.rel(path)

    def read_records(self, iteration: int, name: str, cls: type[R]) -> list[R]:
        path = self.artefact(iteration, name)
        if not path.exists():
            raise RunError(f"{path} is missing: run the phase that writes it first")
        return list(iter_jsonl(path, cls))

    def read_json(self, iteration: int, name: str) -> Any:
        path = self.artefact(iteration, name)
        if not path.exists():
            raise RunError(f"{path} is missing: run the phase that writes it first")
        return json.loads(path.read_text(encoding="utf-8"))

    def write_json(self, iteration: int, name: str, data: Any) -> str:
        self._writer_only(name)
        path = self.artefact(iteration, name)
        atomic_write_json(path, data)
        return self.rel(path)

    def chunks(self, iteration: int, name: str) -> ChunkStore:
        return ChunkStore(self.artefact(iteration, f"{name}.parts"))

    def _writer_only(self, name: str) -> None:
        if self.follower:
            raise RunError(f"rank {self.ranks.rank} may not write {name}: only rank 0 writes the run directory")

    @contextmanager
    def checkpoint_dir(self, iteration: int, name: str) -> Iterator[Path]:
        """A folder to fill that replaces ``iter_k/NAME`` when done; under a launcher, one
        folder for every rank (see `reasoner.ranks.shared_dir`)."""
        target = self.artefact(iteration, name)
        with shared_dir(target, self.ranks) if self.ranks.launched else atomic_dir(target) as tmp:
            yield tmp

    def state_dir(self, iteration: int, phase: str = "train") -> StateStore:
        folder = self.artefact(iteration, "train_state" if phase == "train" else f"train_state_{phase}")
        return StateStore(folder, self.ranks)


class ChunkStore:
    """Numbered JSONL parts of a phase's output; a killed phase keeps its finished parts."""

    def __init__(self, folder: Path):
        self.folder = folder

    def path(self, index: int) -> Path:
        return self.folder / f"part-{index:05d}.jsonl"

    def has(self, index: int) -> bool:
        return self.path(index).exists()

    def write(self, index: int, records: Iterable[Any]) -> None:
        atomic_write_jsonl(self.path(index), records)

    def read(self, index: int, cls: type[R]) -> list[R]:
        return list(iter_jsonl(self.path(index), cls))

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class StateStore:
    """Training state folders ``step-NNNNNN`` and a ``latest`` pointer written last."""

    def __init__(self, folder: Path, ranks: Ranks | None = None):
        self.folder = folder
        self.ranks = ranks or Ranks()

    def latest(self) -> Path | None:
        pointer = self.folder / "latest"
        if not pointer.exists():
            return None
        path = self.folder / pointer.read_text().strip()
        return path if path.exists() else None

    @contextmanager
    def save(self, step: int) -> Iterator[Path]:
        target = self.folder / f"step-{step:06d}"
        with shared_dir(target, self.ranks) if self.ranks.launched else atomic_dir(target) as tmp:
            yield tmp
        if self.ranks.main:
            atomic_write_text(self.folder / "latest", target.name + "\n")
            for old in self.folder.glob("step-*"):
                if old.name != target.name:
                    shutil.rmtree(old, ignore_errors=True)
        barrier()  # every rank sees the new pointer before it goes on

    def clear(self) -> None:
        barrier()
        if self.ranks.main:
            shutil.rmtree(self.folder, ignore_errors=True)

    def keep_rows(self, name: str, key: str, rows: list[list[float]]) -> None:
        """Keep rows of numbers (a reference log-prob pass) beside the saved steps, as float64
        safetensors tagged with ``key``; they go with the folder (`clear`, a redo). Rank 0 writes."""
        if not self.ranks.main:
            return
        import numpy as np
        from safetensors.numpy import save

        data = {
            "values": np.array([x for row in rows for x in row], dtype=np.float64),
            "lengths": np.array([len(row) for row in rows], dtype=np.int64),
        }
        atomic_write_bytes(self.folder / f"{name}.rows.safetensors", save(data, metadata={"key": key}))

    def kept_rows(self, name: str, key: str) -> list[list[float]] | None:
        """The rows `keep_rows` kept under ``name`` for this ``key``; None if there are none for it
        (or the file does not read)."""
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(self.folder / f"{name}.rows.safetensors"), "np") as f:
                if (f.metadata() or {}).get("key") != key:
                    return None
                values, lengths = f.get_tensor("values").tolist(), f.get_tensor("lengths").tolist()
        except (OSError, SafetensorError):
            return None
        bounds = [0, *itertools.accumulate(lengths)]
        return [values[a:b] for a, b in itertools.pairwise(bounds)]


def run_path(name: str) -> Path:
    """A run named on the command line: an existing path or one with a slash as written, else
    a name under ./runs/."""
    path = Path(name)
    if path.exists() or "/" in name or name.startswith("."):
        return path
    return Path("runs") / name


def list_runs(root: Path) -> list[RunDir]:
    if not root.exists():
        return []
    return [RunDir(p) for p in sorted(root.iterdir()) if (p / "config.toml").exists()]
