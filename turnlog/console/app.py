"""The console's ASGI application: pages, the HTTP API and static assets behind the Guard.

    app = create_app(ConsoleConfig(), Backend(bootstrap, database_url, topic_prefix))
    uvicorn.run(app, host=config.host, port=config.port)

Rule: the app owns its backend's lifetime (started in the lifespan, stopped after the
last request). Every asset is served from console/static: the console works offline.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from turnlog.console.api import EXCEPTION_HANDLERS, api_routes
from turnlog.console.backend import Backend
from turnlog.console.config import ConsoleConfig
from turnlog.console.pages import page_routes
from turnlog.console.security import Guard, SignIns

__all__ = ["create_app"]

STATIC = Path(__file__).parent / "static"


def create_app(config: ConsoleConfig, backend: Backend) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await backend.start()
        try:
            yield
        finally:
            await backend.stop()

    app = Starlette(
        routes=[
            *api_routes(),
            *page_routes(),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.config = config
    app.state.backend = backend
    app.state.sign_ins = SignIns()
    app.add_middleware(Guard, config=config, sign_ins=app.state.sign_ins)
    return app
