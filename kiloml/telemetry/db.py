"""The fleet database: its schema (SQLAlchemy Core, the same on SQLite and PostgreSQL) and
opening a URL as one line when the database cannot be reached.

A record is stored once per device: the unique key is (device, the record's 48 bytes), so
ingesting a file twice, or the same record from a .bin and a .jsonl, adds nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kiloml.errors import KilomlError
from kiloml.optional import needs

with needs("sqlalchemy", "kiloml fleet"):
    from sqlalchemy import (
        BigInteger,
        Column,
        Engine,
        Float,
        ForeignKey,
        Index,
        Integer,
        LargeBinary,
        MetaData,
        SmallInteger,
        String,
        Table,
        UniqueConstraint,
        create_engine,
        exc,
    )
    from sqlalchemy.engine import make_url

__all__ = [
    "CONNECT_TIMEOUT_S",
    "DECISION_COLUMNS",
    "DEFAULT_URL",
    "devices",
    "metadata",
    "open_database",
    "records",
    "shown_url",
]

DEFAULT_URL = "sqlite:///fleet.db"
CONNECT_TIMEOUT_S = 5  # a server that does not answer is an error in seconds, not minutes
DECISION_COLUMNS = tuple(f"decisions_{c}" for c in range(6))

metadata = MetaData()
# SQLite makes only an INTEGER PRIMARY KEY an auto-increment rowid
_ID = BigInteger().with_variant(Integer(), "sqlite")

devices = Table(
    "devices", metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
)

records = Table(
    "records", metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("device_id", ForeignKey("devices.id"), nullable=False),
    Column("model_id", String(16), nullable=False),
    Column("format_version", SmallInteger, nullable=False),
    Column("n_classes", SmallInteger, nullable=False),
    Column("uptime_s", BigInteger, nullable=False),
    Column("windows", BigInteger, nullable=False),
    *[Column(name, Integer, nullable=False) for name in DECISION_COLUMNS],
    Column("uncertain", Integer, nullable=False),
    Column("top_score_p10", Float, nullable=False),
    Column("top_score_p50", Float, nullable=False),
    Column("top_score_p90", Float, nullable=False),
    Column("out_of_range_rate", Float, nullable=False),
    Column("drift_z", Float, nullable=False),
    Column("ood_score", Float, nullable=False),
    Column("entropy", Float, nullable=False),
    Column("flags", Integer, nullable=False),
    Column("received_s", Float, nullable=True),
    Column("raw", LargeBinary(48), nullable=False),
    UniqueConstraint("device_id", "raw", name="records_device_raw"),
    Index("records_device_uptime", "device_id", "uptime_s"),
)


def shown_url(url: str) -> str:
    """The URL as an error may print it: without its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except exc.ArgumentError:
        return url


def open_database(url: str, *, create: bool = True) -> Engine:
    """An engine on ``url`` with the schema in place (``create``) or checked to be there.
    postgresql:// means psycopg 3. A URL that does not parse, a driver that is not
    installed, a server that cannot be reached: one line (KilomlError)."""
    try:
        parsed = make_url(url)
    except exc.ArgumentError:
        raise KilomlError(f"{url!r} is not a database URL (sqlite:///fleet.db, "
                          "postgresql://user@host/db)", where="--db") from None
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        with needs("psycopg", "a PostgreSQL database", where="--db"):
            import psycopg  # noqa: F401  (the driver SQLAlchemy loads; named if missing)
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
    elif parsed.get_backend_name() != "sqlite":
        raise KilomlError(f"{shown_url(url)}: kiloml fleet stores telemetry in SQLite or "
                          "PostgreSQL", where="--db")
    database = parsed.database if parsed.get_backend_name() == "sqlite" else None
    if not create and database and database != ":memory:" and not Path(database).is_file():
        # connecting would create an empty file: a report of a typo is not wanted
        raise KilomlError(f"{shown_url(url)}: no such database file (kiloml fleet ingest "
                          "creates it)", where="--db")
    try:
        engine = create_engine(parsed, connect_args=connect_args)
        with engine.begin() as conn:
            if create:
                metadata.create_all(conn)
            else:
                missing = [t for t in metadata.tables if not engine.dialect.has_table(conn, t)]
                if missing:
                    raise KilomlError(f"{shown_url(url)} holds no fleet telemetry (no table "
                                      f"{missing[0]}; kiloml fleet ingest fills it)",
                                      where="--db")
    except (exc.OperationalError, exc.InterfaceError, exc.NoSuchModuleError) as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()
        raise KilomlError(f"cannot reach the database {shown_url(url)}: "
                          f"{(reason[0] if reason else type(error).__name__)[:300]}",
                          where="--db") from None
    return engine
