"""Builds a service's FastAPI app: routers, problem errors, auth, health, metrics, lifespan."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.ext.asyncio import AsyncSession

from shared.bus.base import Transport
from shared.clock import Clock
from shared.errors import install_problem_handlers, problem_response
from shared.limits import BodySizeLimitMiddleware
from shared.observability import RequestContextMiddleware
from shared.openapi import document_problems
from shared.outbox import Outbox
from shared.ratelimit import AnonymousWriteLimitMiddleware, WriteLimiter
from shared.runtime import Runtime, ServiceDefinition
from shared.settings import ServiceSettings
from shared.timers import Timers


def create_service_app(
    definition: ServiceDefinition,
    settings: ServiceSettings | None = None,
    *,
    transport: Transport | None = None,
    clock: Clock | None = None,
) -> FastAPI:
    settings = settings or ServiceSettings.for_service(definition.name)
    runtime = Runtime(definition, settings, transport=transport, clock=clock)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title=definition.title,
        description=definition.description,
        version=definition.version,
        lifespan=lifespan,
        openapi_tags=[{"name": "operations", "description": "Health, readiness and metrics."}],
    )
    app.state.runtime = runtime
    install_problem_handlers(app)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.state.write_limiter = WriteLimiter.from_settings()  # charged per credential in shared.auth
    app.add_middleware(AnonymousWriteLimitMiddleware, limiter=app.state.write_limiter)
    app.add_middleware(RequestContextMiddleware, service=definition.name)
    for router in definition.routers:
        app.include_router(router)
    _add_operations_routes(app, runtime)
    document_problems(app)
    return app


def _add_operations_routes(app: FastAPI, runtime: Runtime) -> None:
    @app.get("/healthz", tags=["operations"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok", "service": runtime.name}

    @app.get(
        "/readyz", tags=["operations"], summary="Readiness", responses={503: {"description": "Not ready"}}
    )
    async def readyz() -> Any:
        """The database and the broker answer."""
        checks = {"database": "ok", "broker": "ok"}
        try:
            await runtime.db.ping()
        except Exception as exc:
            checks["database"] = f"unreachable: {type(exc).__name__}"
        if not runtime.transport.is_connected:
            checks["broker"] = "unreachable"
        if all(v == "ok" for v in checks.values()):
            return {"status": "ready", "service": runtime.name, "checks": checks}
        return problem_response(503, detail="A dependency is unreachable.", slug="not-ready", checks=checks)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        """Prometheus text exposition."""
        with contextlib.suppress(Exception):  # metrics must still answer when the database does not
            await runtime.refresh_gauges()
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


# Dependencies are `async def` on purpose: FastAPI runs plain `def` dependencies in a thread pool, which
# costs a thread hand-off per dependency per request for what is an attribute lookup.
def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_runtime(request: Request) -> Runtime:
    return runtime_of(request)


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed after the handler returns, rolled back if it raises."""
    async with runtime_of(request).db.transaction() as session:
        yield session


async def _read_session(request: Request) -> AsyncIterator[AsyncSession]:
    """For routes that only read: no transaction (see `Database.reading`)."""
    async with runtime_of(request).db.reading() as session:
        yield session


async def _outbox(request: Request) -> Outbox:
    return runtime_of(request).outbox


async def _clock(request: Request) -> Clock:
    return runtime_of(request).clock


async def _timers(request: Request) -> Timers:
    timers = runtime_of(request).timers
    if timers is None:
        raise RuntimeError("this service declares no timers (ServiceDefinition.timers)")
    return timers


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SessionDep = Annotated[AsyncSession, Depends(_session, scope="function")]
ReadSessionDep = Annotated[AsyncSession, Depends(_read_session, scope="function")]
OutboxDep = Annotated[Outbox, Depends(_outbox)]
ClockDep = Annotated[Clock, Depends(_clock)]
TimersDep = Annotated[Timers, Depends(_timers)]

__all__ = [
    "ClockDep",
    "OutboxDep",
    "ReadSessionDep",
    "RuntimeDep",
    "SessionDep",
    "TimersDep",
    "create_service_app",
]
