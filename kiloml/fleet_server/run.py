"""`kiloml fleet serve`: check the token and the database, listen, run uvicorn.

Everything that can be refused is refused before the server runs, as one line: no token
in the environment, a database that cannot be reached, an address that cannot be bound.
The socket is bound here (not by uvicorn) for that, and so that --port 0 prints the port
the system chose."""

from __future__ import annotations

import os
import socket

from kiloml.errors import KilomlError
from kiloml.fleet_server.app import create_app
from kiloml.fleet_server.store import Store
from kiloml.optional import needs
from kiloml.telemetry.db import open_database, shown_url

with needs("uvicorn", "kiloml fleet serve"):
    import uvicorn

__all__ = ["TOKEN_ENV", "TOKEN_MIN", "bind", "read_token", "serve"]

TOKEN_ENV = "KILOML_FLEET_TOKEN"
TOKEN_MIN = 8  # characters: a token this short is a placeholder, not a secret


def read_token(env: str = TOKEN_ENV) -> str:
    token = os.environ.get(env, "").strip()
    if not token:
        raise KilomlError(f"no bearer token: set {env} to the secret the devices send "
                          "(Authorization: Bearer <token>)", where=env)
    if len(token) < TOKEN_MIN:
        raise KilomlError(f"the token is {len(token)} characters; use at least {TOKEN_MIN} "
                          "(e.g. python -c 'import secrets; print(secrets.token_urlsafe())')",
                          where=env)
    return token


def bind(host: str, port: int) -> socket.socket:
    if not 0 <= port <= 65535:
        raise KilomlError(f"{port} is not a TCP port (0 to 65535; 0: any free port)",
                          where="--port")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise KilomlError(f"{host!r} is not an address of this machine ({exc.strerror})",
                          where="--host") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise KilomlError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                          where="--port") from None
    sock.set_inheritable(True)
    return sock


def serve(url: str, host: str, port: int) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM: uvicorn stops cleanly)."""
    token = read_token()
    engine = open_database(url)
    try:
        sock = bind(host, port)
        bound_host, bound_port = sock.getsockname()[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        app = create_app(Store(engine), token, shown_url(url))
        print(f"kiloml fleet serve: http://{shown}:{bound_port}/ (database {shown_url(url)}; "
              f"POST /telemetry with Authorization: Bearer ${TOKEN_ENV})", flush=True)
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        engine.dispose()
