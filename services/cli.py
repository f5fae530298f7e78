"""`python -m services …`: run the platform or one service, migrate, issue dev tokens, replay dead letters."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
from pathlib import Path
from typing import Any

from services.catalogue import PLATFORM_PORT, SERVICES
from shared.auth import ROLES, issue_token
from shared.observability import configure_logging
from shared.settings import ServiceSettings


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    service = args.service
    settings = ServiceSettings.for_service(service or "kefu")
    configure_logging(settings.log_level, settings.log_format)
    if service:
        app = SERVICES[service].definition
        from shared.app import create_service_app

        asgi = create_service_app(app, settings)
        port = args.port or SERVICES[service].port
    else:
        from services.platform import create_platform

        asgi = create_platform()  # type: ignore[assignment]
        port = args.port or PLATFORM_PORT
    uvicorn.run(
        _freeze_after_startup(asgi),
        host=args.host,
        port=port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
    )


def _freeze_after_startup(app: Any) -> Any:
    """The app, whose startup ends with `gc.freeze()`.

    What exists once a service has started (modules, routes, compiled statements, the pools) lives as long
    as the process; frozen, the collector stops walking it at every full collection, which saves ~7 % of
    the CPU of a contact and shortens the collector's pauses. Only served processes do this: tests build
    many apps in one process and must be able to collect the old ones.
    """

    async def lifespan_aware(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            return await app(scope, receive, send)

        async def started(message: Any) -> None:
            if message["type"] == "lifespan.startup.complete":
                gc.collect()
                gc.freeze()
            await send(message)

        return await app(scope, receive, started)

    return lifespan_aware


def _token(args: argparse.Namespace) -> None:
    settings = ServiceSettings.for_service("kefu")
    print(issue_token(secret=settings.jwt_secret, subject=args.sub, roles=args.role, name=args.name))


async def _migrate(services: list[str]) -> None:
    from shared.db import Database
    from shared.migrations import upgrade

    for name in services:
        settings = ServiceSettings.for_service(name)
        db = Database(settings.database_url)
        try:
            await upgrade(db, SERVICES[name].definition.migrations_dir, service=name)
        finally:
            await db.dispose()
        print(f"{name}: migrated {settings.database_url.split('@')[-1]}")


def _revision(args: argparse.Namespace) -> None:
    """Autogenerate a migration by comparing the models with a scratch database at head."""
    import tempfile

    from alembic import command

    from shared.db import Database
    from shared.migrations import alembic_config, upgrade

    definition = SERVICES[args.service].definition
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite+aiosqlite:///{scratch}/scratch.db"

        async def at_head() -> None:
            db = Database(url)
            await upgrade(db, definition.migrations_dir, service=args.service)
            await db.dispose()

        asyncio.run(at_head())
        config = alembic_config(definition.migrations_dir, url)
        command.revision(config, message=args.message, autogenerate=True)


async def _replay(service: str, limit: int | None) -> None:
    from shared.bus.parking import BUS_FILE
    from shared.runtime import transport_for

    settings = ServiceSettings.for_service(service)
    transport = transport_for(settings)
    await transport.connect()
    try:
        count = await transport.replay_dead_letters(service, limit)
    finally:
        await transport.close()
    if settings.amqp_url:
        print(f"{service}: replayed {count} dead letter(s)")
    else:
        print(
            f"{service}: {count} dead letter(s) due again in {settings.data_dir / BUS_FILE}; the embedded"
            " platform delivers them within a second if it is running, or when it next starts"
        )


def openapi_documents() -> dict[str, str]:
    """Each service's OpenAPI document as committed under docs/openapi/."""
    from shared.app import create_service_app

    documents = {}
    for name, entry in SERVICES.items():
        app = create_service_app(entry.definition, ServiceSettings.for_service(name))
        documents[name] = json.dumps(app.openapi(), ensure_ascii=False, indent=2) + "\n"
    return documents


def _openapi(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, document in openapi_documents().items():
        (out / f"{name}.json").write_text(document)
        print(f"wrote {out / f'{name}.json'}")


def asyncapi_document() -> str:
    import yaml

    import shared.contracts  # noqa: F401
    from shared.asyncapi import build
    from shared.events import registry

    consumers = {
        name: entry.definition.handlers.routing_keys
        for name, entry in SERVICES.items()
        if entry.definition.handlers is not None
    }
    document = build(registry, consumers, external_producers=("crm", "sales", "channel"))
    header = "# Generated by `make asyncapi` from shared/contracts; a test fails when it is out of date.\n"
    return header + yaml.safe_dump(document, allow_unicode=True, sort_keys=False, width=110)


async def _createdb(url: str) -> None:
    import asyncpg

    plain = url.replace("postgresql+asyncpg://", "postgresql://")
    connection = await asyncpg.connect(f"{plain.rstrip('/')}/postgres")
    try:
        for name in SERVICES:
            database = f"kefu_{name}"
            exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
            if not exists:
                await connection.execute(f'CREATE DATABASE "{database}"')
                print(f"created database {database}")
    finally:
        await connection.close()


async def _wait_ready(timeout: float) -> None:
    import httpx

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with httpx.AsyncClient() as http:
        for name, entry in SERVICES.items():
            while True:
                try:
                    if (await http.get(f"http://127.0.0.1:{entry.port}/readyz")).status_code == 200:
                        print(f"{name} ready on :{entry.port}")
                        break
                except httpx.TransportError:
                    pass
                if loop.time() > deadline:
                    sys.exit(f"{name} is not ready after {timeout:.0f}s; see data/run/{name}.log")
                await asyncio.sleep(0.5)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services", description=__doc__)
    commands = parser.add_subparsers(dest="command")

    serve = commands.add_parser("serve", help="run the platform (default) or one service")
    serve.add_argument("--service", choices=sorted(SERVICES))
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int)

    token = commands.add_parser("token", help="print a dev JWT signed with KEFU_JWT_SECRET")
    token.add_argument("--role", action="append", choices=ROLES, required=True)
    token.add_argument("--sub", required=True)
    token.add_argument("--name")

    migrate = commands.add_parser("migrate", help="bring databases to the latest schema")
    migrate.add_argument("--service", choices=sorted(SERVICES), action="append")

    revision = commands.add_parser("revision", help="autogenerate a migration for a service")
    revision.add_argument("--service", choices=sorted(SERVICES), required=True)
    revision.add_argument("-m", "--message", required=True)

    replay = commands.add_parser("replay-dead-letters", help="put a service's dead letters back on its queue")
    replay.add_argument("--service", choices=sorted(SERVICES), required=True)
    replay.add_argument("--limit", type=int)

    openapi = commands.add_parser("openapi", help="write each service's OpenAPI document")
    openapi.add_argument("--out", default="docs/openapi")

    argv = sys.argv[1:] if argv is None else argv
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["serve", *argv]  # `python -m services --port 9000` serves the platform
    asyncapi = commands.add_parser("asyncapi", help="write the AsyncAPI 3 document of the event catalogue")
    asyncapi.add_argument("--out", default="docs/asyncapi.yaml")

    createdb = commands.add_parser("createdb", help="create the four PostgreSQL databases if missing")
    createdb.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432")

    wait = commands.add_parser("wait-ready", help="wait until the four services on 8001-8004 are ready")
    wait.add_argument("--timeout", type=float, default=60)

    args = parser.parse_args(argv)
    if args.command == "serve":
        _serve(args)
    elif args.command == "token":
        _token(args)
    elif args.command == "migrate":
        asyncio.run(_migrate(args.service or list(SERVICES)))
    elif args.command == "revision":
        _revision(args)
    elif args.command == "replay-dead-letters":
        asyncio.run(_replay(args.service, args.limit))
    elif args.command == "openapi":
        _openapi(args)
    elif args.command == "asyncapi":
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(asyncapi_document())
        print(f"wrote {args.out}")
    elif args.command == "createdb":
        asyncio.run(_createdb(args.url))
    elif args.command == "wait-ready":
        asyncio.run(_wait_ready(args.timeout))
