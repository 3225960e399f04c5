"""Checkpoints of a SQLite WAL kept out of the webhook's requests.

A WAL checkpoint copies logged pages into the database file and syncs it:
milliseconds of disk work. SQLite runs one inside whichever commit crosses
its threshold, so about one wait request in a hundred paid for it (p99 5.7 ms
against 2.5 ms without; tests/bench/README.md). The webhook's connections turn
that off, and one thread per process and database checkpoints instead, every
second while webhooks use it, and ends after a minute without them.
"""
import os
import sqlite3
import threading
import time

EVERY_S = 1.0
IDLE_S = 60.0
TRUNCATE_FRAMES = 4000  # about 16 MB of 4 KiB pages: then restart the WAL, briefly holding writers

_last_used: dict[tuple[int, str], float] = {}
_lock = threading.Lock()


def keep_checkpointed(path: str) -> None:
    """Note a webhook's use of the SQLite file at `path`; start its checkpoint thread if none runs."""
    key = (os.getpid(), path)  # by process: a forked gunicorn worker has none of its parent's threads
    with _lock:
        running = key in _last_used
        _last_used[key] = time.monotonic()
    if not running:
        threading.Thread(target=_checkpoint_while_used, args=(key,), daemon=True,
                         name=f"holdguard-checkpoint {path}").start()


def _checkpoint_while_used(key: tuple[int, str]) -> None:
    """PASSIVE checkpoints never block readers or writers; a lock or a missing file waits a round."""
    conn = None
    try:
        while time.monotonic() - _last_used[key] < IDLE_S:
            time.sleep(EVERY_S)
            try:
                conn = conn or sqlite3.connect(f"file:{key[1]}?mode=rw", uri=True, timeout=0.1)
                _busy, frames, _done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if frames >= TRUNCATE_FRAMES:  # steady writes: PASSIVE never lets the WAL start over
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                if conn is not None:
                    conn.close()
                conn = None
    finally:
        with _lock:
            _last_used.pop(key, None)
        if conn is not None:
            conn.close()
