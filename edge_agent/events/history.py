"""Hazard history: every hazard start/end kept in SQLite (WAL) with its snapshot, fed by a hub sink."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from ..config.events import EventsConfig
from .disk import DiskWorker
from .hub import Event
from .snapshots import SnapshotDir
from .types import HazardEvent

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS hazards (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, source TEXT NOT NULL, rule TEXT NOT NULL,
    state TEXT NOT NULL, time REAL NOT NULL, frame_id INTEGER, reason TEXT NOT NULL, detections TEXT NOT NULL,
    snapshot TEXT, image_size TEXT
);
CREATE INDEX IF NOT EXISTS hazards_source ON hazards (source, rule, seq);
"""
MAX_PENDING = 10_000  # hazard events waiting for the disk; past it the oldest are not recorded


def open_db(path: Path) -> sqlite3.Connection:
    """A SQLite database in WAL mode (readers never block the writer; fsync at checkpoints)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


def event_row(ev: HazardEvent, snapshot: str | None) -> dict[str, Any]:
    """The JSON form of a hazard event for the API and brokers."""
    size = [ev.frame.width, ev.frame.height] if ev.frame is not None else None
    return {
        "id": ev.event_id,
        "source": ev.source_id,
        "rule": ev.rule,
        "state": ev.state,
        "time": round(ev.time, 3),
        "frame_id": ev.frame_id,
        "reason": ev.reason,
        "detections": [d.to_json() for d in ev.detections],
        "snapshot": snapshot,
        "image_size": size,
    }


@dataclass
class Page:
    """One page of history, newest first; `next` is the cursor of the following page."""

    events: list[dict[str, Any]]
    next: int | None


class HazardHistory:
    """Records hazard events and their snapshots off the loop; serves them back for the API and brokers."""

    def __init__(self, cfg: EventsConfig, disk: DiskWorker, render: DiskWorker) -> None:
        self.cfg = cfg
        self.disk = disk  # SQLite: the history and the MQTT outbox
        self.render = (
            render  # snapshots: decode, draw, encode, files (CPU-heavy; kept off the database's thread)
        )
        root = cfg.state_path()
        self.db_path = root / "history.db"
        self.snapshots = SnapshotDir(root / "snapshots", cfg.snapshot_max_count, cfg.snapshot_max_bytes)
        self._db: sqlite3.Connection | None = None
        self._pending: deque[HazardEvent] = deque()
        self._wakeup = asyncio.Event()
        self.recorded = 0
        self.saved = 0
        self.skipped = 0
        self.last_error: str | None = None

    def _open(self) -> None:
        self._db = open_db(self.db_path)
        self._db.executescript(_SCHEMA)

    async def async_open(self) -> None:
        """Open the database and index the snapshot directory (on the workers)."""
        await self.disk.run(self._open)
        await self.render.run(self.snapshots.open)

    def sink(self, event: Event) -> None:
        """Hub sink: queue hazard events for the writer (never blocks)."""
        if isinstance(event.payload, HazardEvent):
            if len(self._pending) >= MAX_PENDING:
                self._pending.popleft()
                self.skipped += 1
            self._pending.append(event.payload)
            self._wakeup.set()

    async def run(self) -> None:
        """Write queued events, in order, until cancelled."""
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            await self.async_flush()

    async def async_flush(self) -> None:
        """Write every queued event now."""
        while self._pending:
            batch = list(self._pending)
            self._pending.clear()
            try:
                snapshots = await self.render.run(self._render, batch)
                await self.disk.run(self._insert, batch, snapshots)
            except (OSError, sqlite3.Error) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.error("hazard history: cannot write %d events: %s", len(batch), exc)

    def _render(self, batch: list[HazardEvent]) -> list[str | None]:
        """Save the snapshots of the starts in a batch (render worker); their ids, None where none was saved."""
        saved: list[str | None] = []
        for ev in batch:
            snapshot = None
            if ev.snapshot is not None and ev.frame is not None and self.cfg.snapshots:
                try:
                    self.snapshots.save(ev.snapshot, ev.frame, ev.detections, self.cfg.snapshot_quality)
                    snapshot = ev.snapshot
                    self.saved += 1
                except (OSError, ValueError) as exc:  # ValueError: simplejpeg could not decode the frame
                    log.warning("snapshot of %s/%s not saved: %s", ev.source_id, ev.rule, exc)
            saved.append(snapshot)
        return saved

    def _insert(self, batch: list[HazardEvent], snapshots: list[str | None]) -> None:
        if self._db is None:
            return
        rows = []
        for ev, snapshot in zip(batch, snapshots, strict=True):
            row = event_row(ev, snapshot)
            rows.append(
                (
                    *(row[k] for k in ("id", "source", "rule", "state", "time", "frame_id", "reason")),
                    json.dumps(row["detections"]),
                    snapshot,
                    json.dumps(row["image_size"]),
                )
            )
        with self._db:
            self._db.executemany(
                "INSERT OR IGNORE INTO hazards (id, source, rule, state, time, frame_id, reason, detections,"
                " snapshot, image_size) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            self._db.execute(
                "DELETE FROM hazards WHERE seq <= (SELECT MAX(seq) FROM hazards) - ?",
                (self.cfg.history_size,),
            )
        self.recorded += len(rows)

    def _page(self, source: str | None, rule: str | None, before: int | None, limit: int) -> Page:
        if self._db is None:
            return Page([], None)
        where: list[str] = ["1"]
        args: list[str | int] = []
        for column, value in (("source", source), ("rule", rule)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if before is not None:
            where.append("seq < ?")
            args.append(before)
        cur = self._db.execute(
            "SELECT seq, id, source, rule, state, time, frame_id, reason, detections, snapshot, image_size"
            f" FROM hazards WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?",
            (*args, limit + 1),
        )
        rows = cur.fetchall()
        events = [self._row(r) for r in rows[:limit]]
        return Page(events, rows[limit - 1][0] if len(rows) > limit else None)

    def _row(self, r: tuple[Any, ...]) -> dict[str, Any]:
        keys = ("seq", "id", "source", "rule", "state", "time", "frame_id", "reason")
        body = dict(zip(keys, r[:8], strict=True))
        body["detections"] = json.loads(r[8])
        body["snapshot"] = r[9]
        body["image_size"] = json.loads(r[10]) if r[10] else None
        return body

    async def async_page(self, source: str | None, rule: str | None, before: int | None, limit: int) -> Page:
        """Recent events, newest first, optionally of one source and/or rule, before a cursor."""
        await self.async_flush()
        page = await self.disk.run(self._page, source, rule, before, limit)
        kept = await self.render.run(
            lambda: {e["snapshot"] for e in page.events if self.snapshots.file(e["snapshot"] or "")}
        )
        for e in page.events:
            if e["snapshot"] not in kept:
                e["snapshot"] = None  # removed by the directory's bound
        return page

    async def async_snapshot(self, snapshot_id: str) -> bytes | None:
        """A snapshot's JPEG bytes, None when unknown or removed."""
        await self.async_flush()
        return await self.render.run(self.snapshots.read, snapshot_id)

    def close(self) -> None:
        """Close the database (worker thread)."""
        if self._db is not None:
            self._db.close()
            self._db = None

    def close_workers(self) -> None:
        """Finish queued work and stop both threads (blocking: from a thread)."""
        self.disk.close()
        self.render.close()


HISTORY: web.AppKey[HazardHistory] = web.AppKey("history", HazardHistory)
