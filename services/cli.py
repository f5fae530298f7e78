"""`python -m services …`: run the platform or one service, migrate, issue dev tokens, replay dead letters."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

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
    uvicorn.run(asgi, host=args.host, port=port, log_config=None, access_log=False, proxy_headers=True)


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
    from shared.runtime import transport_for

    settings = ServiceSettings.for_service(service)
    if not settings.amqp_url:
        sys.exit("replay-dead-letters needs AMQP_URL: the in-process bus keeps dead letters in memory only")
    transport = transport_for(settings)
    await transport.connect()
    try:
        count = await transport.replay_dead_letters(service, limit)
    finally:
        await transport.close()
    print(f"{service}: replayed {count} dead letter(s)")


def _openapi(args: argparse.Namespace) -> None:
    from shared.app import create_service_app

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, entry in SERVICES.items():
        app = create_service_app(entry.definition, ServiceSettings.for_service(name))
        (out / f"{name}.json").write_text(json.dumps(app.openapi(), ensure_ascii=False, indent=2) + "\n")
        print(f"wrote {out / f'{name}.json'}")


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
