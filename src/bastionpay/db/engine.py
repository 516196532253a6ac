"""Engines per database URL: SQLite (WAL) by default, PostgreSQL in production.

SQLite allows one writer at a time. A deferred transaction that later tries to write can fail with
"database is locked" instead of waiting, so write units of work start with `BEGIN IMMEDIATE`, and
inside one process they queue on a lock first (fair and sleep-free, unlike SQLite's busy handler);
`busy_timeout` covers the other processes (the worker, CLI commands).
"""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import Engine, create_engine, event

WRITE_OPTION = "bastionpay_write"
SQLITE_BUSY_TIMEOUT_MS = 10_000


class Database:
    """One database: a read engine and a write engine sharing a connection pool."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        # hide_parameters: a database error must not carry customer data or secrets into the
        # logs (SECURITY-REQUIREMENTS L3).
        kwargs: dict[str, Any] = {"echo": echo, "future": True, "hide_parameters": True}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 10}
        else:
            kwargs.update(pool_size=20, max_overflow=10, pool_pre_ping=True)
        self.engine: Engine = create_engine(url, **kwargs)
        self.write_engine: Engine = self.engine.execution_options(**{WRITE_OPTION: True})
        self.write_lock: threading.Lock | None = threading.Lock() if self.is_sqlite else None
        if self.is_sqlite:
            _install_sqlite_hooks(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()


def _install_sqlite_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin (SQLAlchemy docs:
        # "Serializable isolation / Savepoints / Transactional DDL" for pysqlite).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed payment survives power loss (NORMAL could lose the last commits).
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


_cache: dict[str, Database] = {}
_cache_lock = threading.Lock()


def get_database(url: str) -> Database:
    """Process-wide Database per URL (engines are expensive and thread-safe)."""
    with _cache_lock:
        db = _cache.get(url)
        if db is None:
            db = Database(url)
            _cache[url] = db
        return db


def dispose_all() -> None:
    with _cache_lock:
        for db in _cache.values():
            db.dispose()
        _cache.clear()
