"""The FastAPI application: POST /telemetry (bearer token), GET / (the dashboard),
GET /api/devices (the fleet report's JSON) and GET /api/stats (the server's counters).

POST answers 200 {"stored", "duplicates", "bad": 0, ...} when every record of the body is
good; 400 with the same fields and an "error" when any is bad (CRC, truncated, unknown
version, bad JSON, no device): the good records of that body are stored all the same, as
`kiloml fleet ingest` stores a file's, and since storing is idempotent the sender may
resend the whole body."""

from __future__ import annotations

import hmac
import time
from collections import Counter
from typing import Any

from kiloml.fleet_server.dashboard import render_dashboard
from kiloml.fleet_server.intake import (
    Intake,
    device_problem,
    read_binary,
    read_json,
    read_json_lines,
)
from kiloml.fleet_server.store import Store
from kiloml.optional import needs
from kiloml.telemetry.fleet_data import fleet_summary

with needs("fastapi", "kiloml fleet serve"):
    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import HTMLResponse, JSONResponse
with needs("sqlalchemy", "kiloml fleet serve"):
    from sqlalchemy import exc

__all__ = ["BINARY_TYPES", "JSON_LINES_TYPES", "JSON_TYPES", "MAX_BODY", "create_app"]

MAX_BODY = 4 << 20  # bytes: about 87,000 records a POST
BINARY_TYPES = {"application/octet-stream"}
JSON_TYPES = {"application/json"}
JSON_LINES_TYPES = {"application/x-ndjson", "application/jsonl", "application/jsonlines"}
DB_ERRORS = (exc.OperationalError, exc.InterfaceError)


def token_ok(header: str | None, token: bytes) -> bool:
    """``Authorization: Bearer <token>``, compared in constant time."""
    scheme, _, value = (header or "").partition(" ")
    given = value.strip().encode("utf-8", errors="replace")
    return scheme.lower() == "bearer" and hmac.compare_digest(given, token)


async def read_body(request: Request) -> bytes | None:
    """The body, or None when it is over MAX_BODY (read no further than that)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def parse_body(content_type: str, body: bytes, device: str | None, now_s: float
               ) -> Intake | JSONResponse:
    """The records of a body by its content type, or the response refusing it."""
    if not body.strip():
        intake = Intake()
        intake.add_bad("body", "empty", "the body holds no record")
        return intake
    if content_type in BINARY_TYPES:
        problem = device_problem(device)
        if problem:
            intake = Intake()
            intake.add_bad("body", "device", problem)
            return intake
        assert device is not None
        return read_binary(body, device, now_s)
    if content_type in JSON_TYPES:
        return read_json(body, device, now_s)
    if content_type in JSON_LINES_TYPES:
        return read_json_lines(body, device, now_s)
    return _error(415, f"Content-Type {content_type or '(none)'!r}: send "
                  "application/octet-stream (48-byte records), application/json or "
                  "application/x-ndjson")


def create_app(store: Store, token: str, database: str) -> FastAPI:
    """The application on ``store``; ``database`` is the URL as the page shows it."""
    secret = token.encode("utf-8")
    # no /docs: Swagger UI would load its script from a CDN
    app = FastAPI(title="kiloml fleet", docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/telemetry")
    async def post_telemetry(request: Request) -> JSONResponse:
        if not token_ok(request.headers.get("authorization"), secret):
            store.count(unauthorized=True)
            return JSONResponse({"error": "bad or missing bearer token"}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        body = await read_body(request)
        if body is None:
            store.count(rejected=True, bad=Counter(too_large=1))
            return _error(413, f"the body is over {MAX_BODY:,} bytes: send fewer records "
                          "per POST")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        device = request.query_params.get("device") or request.headers.get("x-device")
        intake = parse_body(content_type, body, device, time.time())
        if isinstance(intake, JSONResponse):
            store.count(rejected=True, bad=Counter(content_type=1))
            return intake
        try:
            stored = await run_in_threadpool(store.store, intake.records)
        except DB_ERRORS as error:
            reason = str(getattr(error, "orig", None) or error).strip().splitlines()
            return _error(503, "the database cannot be reached: "
                          + (reason[0] if reason else type(error).__name__)[:300])
        bad = sum(intake.bad.values())
        store.count(records=len(intake.records), stored=stored, bad=intake.bad,
                    rejected=bad > 0)
        answer: dict[str, Any] = {"records": len(intake.records), "stored": stored,
                                  "duplicates": len(intake.records) - stored, "bad": bad,
                                  "bad_by_kind": dict(sorted(intake.bad.items())),
                                  "errors": intake.errors}
        if bad:
            kinds = ", ".join(f"{n} {k}" for k, n in sorted(intake.bad.items()))
            return _error(400, f"{bad} bad record{'s' if bad > 1 else ''} ({kinds}): "
                          + "; ".join(intake.errors), **answer)
        return JSONResponse(answer)

    def summary() -> tuple[dict[str, Any], list]:
        with store.engine.connect() as conn:
            return fleet_summary(conn)

    @app.get("/api/devices")
    def api_devices() -> JSONResponse:
        return JSONResponse(summary()[0])

    @app.get("/api/stats")
    def api_stats() -> JSONResponse:
        return JSONResponse({"database": database, **store.snapshot()})

    @app.get("/", response_class=HTMLResponse)
    def dashboard() -> HTMLResponse:
        fleet, series = summary()
        return HTMLResponse(render_dashboard(fleet, series, store.snapshot(), database))

    return app
