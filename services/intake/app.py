"""intake as an app: `create_app()`."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import shared.contracts  # noqa: F401  (registers the event catalogue)
from services.intake.handlers import handlers
from services.intake.models import metadata
from services.intake.routes import contacts, customers
from services.intake.rules import seed_defaults
from shared.app import create_service_app
from shared.runtime import ServiceDefinition

DEFINITION = ServiceDefinition(
    name="intake",
    title="Kefu intake",
    description=(
        "Where every customer arrives: customer profiles (客户档案), purchases and warranty, every inbound "
        "contact from phone, e-mail, chat, web, social media and walk-ins, identity verification and "
        "classification. Publishes `intake.*` events."
    ),
    routers=[customers.router, contacts.router],
    metadata=metadata,
    migrations_dir=Path(__file__).parent / "migrations",
    path_prefixes=("customers", "contacts"),
    handlers=handlers,
    on_start=[seed_defaults],
)


# `create_app(settings=None, *, transport=None, clock=None)`
create_app = partial(create_service_app, DEFINITION)
