"""Store-and-forward: messages that must reach the broker, kept in order in SQLite (WAL), bounded."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from ..history import open_db

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB, retain INTEGER NOT NULL,
    snapshot TEXT, size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS discovery (topic TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS sources (source TEXT PRIMARY KEY, seen REAL NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class Message:
    """One message to publish; a snapshot message has no payload yet: the snapshot id's JPEG is read at send."""

    topic: str
    payload: bytes
    retain: bool = False
    snapshot: str | None = None
    seq: int = 0


class Outbox:
    """The queue on disk, oldest first; bounded by count and bytes (oldest dropped, counted). Worker thread only."""

    def __init__(self, path: Path, max_count: int, max_bytes: int) -> None:
        self.path = path
        self.max_count = max_count
        self.max_bytes = max_bytes
        self._db: sqlite3.Connection | None = None
        self.count = 0
        self.bytes = 0
        self.dropped = 0

    def open(self) -> None:
        """Open (or create) the database and count what an earlier run left."""
        self._db = open_db(self.path)
        self._db.executescript(_SCHEMA)
        self.count, self.bytes = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox"
        ).fetchone()
        row = self._db.execute("SELECT value FROM meta WHERE key = 'dropped'").fetchone()
        self.dropped = int(row[0]) if row else 0

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise sqlite3.ProgrammingError("outbox is not open")
        return self._db

    def put(self, messages: list[Message]) -> int:
        """Append messages in order, then drop the oldest past the bounds; returns how many were dropped."""
        db = self._conn()
        with db:
            db.executemany(
                "INSERT INTO outbox (topic, payload, retain, snapshot, size) VALUES (?, ?, ?, ?, ?)",
                [(m.topic, m.payload, int(m.retain), m.snapshot, len(m.payload)) for m in messages],
            )
            self.count += len(messages)
            self.bytes += sum(len(m.payload) for m in messages)
            dropped = self._trim(db)
        return dropped

    def _trim(self, db: sqlite3.Connection) -> int:
        dropped = 0
        while self.count > self.max_count or (self.bytes > self.max_bytes and self.count > 1):
            over = max(1, self.count - self.max_count)
            rows = db.execute("SELECT seq, size FROM outbox ORDER BY seq LIMIT ?", (over,)).fetchall()
            db.execute("DELETE FROM outbox WHERE seq <= ?", (rows[-1][0],))
            self.count -= len(rows)
            self.bytes -= sum(size for _, size in rows)
            dropped += len(rows)
        if dropped:
            self.dropped += dropped
            db.execute("INSERT OR REPLACE INTO meta VALUES ('dropped', ?)", (str(self.dropped),))
        return dropped

    def peek(self, after: int, limit: int) -> list[Message]:
        """The oldest messages with seq > after."""
        rows = self._conn().execute(
            "SELECT seq, topic, payload, retain, snapshot FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit),
        )
        return [Message(t, bytes(p or b""), bool(r), s, seq) for seq, t, p, r, s in rows]

    def done(self, seq: int) -> None:
        """Forget a message the broker acknowledged."""
        db = self._conn()
        with db:
            row = db.execute("DELETE FROM outbox WHERE seq = ? RETURNING size", (seq,)).fetchone()
        if row is not None:
            self.count -= 1
            self.bytes -= row[0]

    def discovered(self) -> set[str]:
        """Discovery topics published so far (to remove what is no longer wanted)."""
        return {r[0] for r in self._conn().execute("SELECT topic FROM discovery")}

    def remember_discovery(self, add: set[str], remove: set[str]) -> None:
        """Update the published discovery topics."""
        db = self._conn()
        with db:
            db.executemany("INSERT OR IGNORE INTO discovery VALUES (?)", [(v,) for v in add])
            db.executemany("DELETE FROM discovery WHERE topic = ?", [(v,) for v in remove])

    def sources(self) -> dict[str, float]:
        """Sources seen, with when they were last seen (wall clock)."""
        return dict(self._conn().execute("SELECT source, seen FROM sources").fetchall())

    def remember_sources(self, seen: dict[str, float], forget: set[str]) -> None:
        """Record when sources were seen; forget the expired ones."""
        db = self._conn()
        with db:
            db.executemany("INSERT OR REPLACE INTO sources VALUES (?, ?)", list(seen.items()))
            db.executemany("DELETE FROM sources WHERE source = ?", [(v,) for v in forget])

    def close(self) -> None:
        """Close the database."""
        if self._db is not None:
            self._db.close()
            self._db = None
