"""The viewer's FastAPI app: the static page and its JSON API under ``/api``.

``create_view_app(paths)`` gives an ASGI app; ``palaestra view`` runs it under
uvicorn on 127.0.0.1 (a token is required to bind elsewhere, as for ``serve``).
Each page's API lives in a module of its own (``runs_api``, ``episodes_api``,
``compare_api``, ``trees_api``, ``play_api``); this module wires them, the
token guard, the error replies and ``/api/version`` (what the page polls to
update a run still being written).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from palaestra.servers.auth import bearer_matches
from palaestra.view import compare_api, episodes_api, play_api, runs_api, trees_api
from palaestra.view.catalog import Catalog

__all__ = ["STATIC_DIR", "TOKEN_COOKIE", "create_view_app"]

STATIC_DIR = Path(__file__).parent / "static"
TOKEN_COOKIE = "palaestra_view_token"


class TokenGuard:
    """Requires the token on every request: a bearer header, or the cookie set by ``/?token=``."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        header = request.headers.get("authorization", "").encode()
        cookie = request.cookies.get(TOKEN_COOKIE, "").encode()
        query = request.query_params.get("token", "").encode()
        if bearer_matches(header, self.token) or bearer_matches(b"Bearer " + cookie, self.token):
            await self.app(scope, receive, send)
            return
        if query and bearer_matches(b"Bearer " + query, self.token):
            # The printed link: set the cookie, then drop the token from the URL.
            response: Response = Response(status_code=303, headers={"location": scope["path"]})
            response.set_cookie(TOKEN_COOKIE, query.decode(), httponly=True, samesite="strict")
            await response(scope, receive, send)
            return
        await JSONResponse({"error": "unauthorized: open the link with ?token="}, 401)(
            scope, receive, send
        )


def create_view_app(
    paths: list[str | Path],
    *,
    env_url: str | None = None,
    env_token: str | None = None,
    token: str | None = None,
) -> FastAPI:
    """The viewer app over ``paths``.

    Args:
        paths: Run folders, folders of runs, or data files (see :class:`Catalog`).
        env_url: A ``palaestra serve`` URL for the Play page (None: Play says how to start one).
        env_token: The bearer token of that server.
        token: Require this token of every request (None: open, for loopback binds).

    Raises:
        FileNotFoundError: A path does not exist.
    """
    app = FastAPI(title="palaestra view", docs_url="/api/docs", openapi_url="/api/openapi.json")
    app.state.catalog = Catalog(paths)
    app.state.env_url = env_url
    app.state.env_token = env_token

    @app.exception_handler(KeyError)
    async def not_found(_request: Request, error: KeyError) -> JSONResponse:
        text = error.args[0] if error.args and isinstance(error.args[0], str) else str(error)
        return JSONResponse({"error": text}, status_code=404)

    @app.exception_handler(ValueError)
    async def bad_request(_request: Request, error: ValueError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=400)

    @app.get("/api/version", tags=["live"])
    def version() -> dict[str, str]:
        """A digest of every viewed file's size and time: it changes when a run is written to."""
        digest = hashlib.sha1()
        for entry in app.state.catalog.files():
            digest.update(f"{entry.id}:{entry.size}:{entry.mtime_ns};".encode())
        for run in app.state.catalog.runs():
            for name in ("run.json", "results.json"):
                path = run.path / name
                if path.is_file():
                    stat = path.stat()
                    digest.update(f"{run.id}/{name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
        return {"version": digest.hexdigest()}

    for module in (runs_api, episodes_api, compare_api, trees_api, play_api):
        app.include_router(module.router, prefix="/api")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)  # none: spares the browser console a 404 per page

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    if token:
        app.add_middleware(TokenGuard, token=token)
    return app
