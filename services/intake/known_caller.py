"""A contact from a customer already on file, on PostgreSQL: one lookup and one atomic statement.

Most contacts come from customers on file who give the number or address they are known by. For them,
recording a contact is a lookup and two inserts (three with an Idempotency-Key). Here the lookup and the
inserts run on the driver's connection, the inserts as one statement — atomic on its own, so no BEGIN and
COMMIT round trips — which costs well under half of the ORM session's unit of work on the busiest write of
the platform. Everything else answers None and takes the general path, `contacts.record`, so each rule
keeps one home: a new, merged or unknown customer, an identifier to learn, a product serial, a
verification that needs another query, or a key seen before.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, fields

import asyncpg
from pydantic import BaseModel

from services.intake import rules
from services.intake.classification import classify
from services.intake.contacts import (
    IDENTIFIER_CHECKS,
    NewContact,
    Recorded,
    compose,
    contact_row,
    given_identifier,
    identifier_keys,
)
from services.intake.schemas import ContactCreate
from shared.clock import Clock
from shared.contracts.common import Tier
from shared.contracts.intake import VerificationMethod
from shared.db import Database
from shared.idempotency import Idempotency, in_flight
from shared.outbox import Outbox

EVENT = "intake.contact.received.v1"

_OWNERS = """
SELECT i.kind, i.value, c.id, c.display_name, c.tier, c.merged_into
FROM customer_identifiers AS i JOIN customers AS c ON c.id = i.customer_id
WHERE (i.kind, i.value) IN (SELECT * FROM unnest($1::varchar[], $2::varchar[]))
"""

_SEEN_KEY = "SELECT 1 FROM idempotency_keys WHERE principal = $1 AND key = $2"

_CONTACT_FIELDS = tuple(f.name for f in fields(NewContact))
_OUTBOX_FIELDS = ("event_id", "type", "payload", "correlation_id", "created_at")
_REMEMBERED_FIELDS = ("principal", "key", "fingerprint", "status_code", "response", "headers", "created_at")


def _insert(table: str, columns: tuple[str, ...], first: int, casts: dict[str, str] | None = None) -> str:
    """`INSERT INTO table (columns) VALUES ($first, …)`, positional parameters as asyncpg takes them."""
    casts = casts or {}
    values = ", ".join(f"${n}{casts.get(c, '')}" for n, c in enumerate(columns, first))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values})"


_AFTER_CONTACT = 1 + len(_CONTACT_FIELDS)
_AFTER_OUTBOX = _AFTER_CONTACT + len(_OUTBOX_FIELDS)
# Data-modifying CTEs all run, in one statement: the contact, its event and the stored answer commit
# together or not at all.
_WRITE = f"WITH contact AS ({_insert('contacts', _CONTACT_FIELDS, 1, {'attachments': '::json'})}) " + _insert(
    "outbox", _OUTBOX_FIELDS, _AFTER_CONTACT
)
_WRITE_REMEMBERING = (
    f"WITH contact AS ({_insert('contacts', _CONTACT_FIELDS, 1, {'attachments': '::json'})}), "
    f"remembered AS ({_insert('idempotency_keys', _REMEMBERED_FIELDS, _AFTER_OUTBOX)}) "
    + _insert("outbox", _OUTBOX_FIELDS, _AFTER_CONTACT)
)


@dataclass(frozen=True, slots=True)
class KnownCustomer:
    """The columns of a customer a contact needs."""

    id: uuid.UUID
    display_name: str
    tier: str


async def record(
    db: Database,
    request: ContactCreate,
    *,
    outbox: Outbox,
    clock: Clock,
    idempotency: Idempotency,
    respond: Callable[[Recorded], BaseModel],
) -> BaseModel | None:
    """Record the contact and answer `respond(recorded)`, or None for the general path.

    With an Idempotency-Key the answer is stored with the contact, in the same statement.
    """
    who = request.customer
    if who.id is not None or request.product_serial:
        return None
    keys = identifier_keys(who)
    if not keys:
        return None
    async with db.driver_connection() as connection:
        if idempotency.key is not None and await connection.fetchval(
            _SEEN_KEY, idempotency.principal, idempotency.key
        ):
            return None  # a replay, or a reuse with another body: the general path answers both
        owners = await connection.fetch(_OWNERS, [k for k, _ in keys], [v for _, v in keys])
        # Every identifier given must already be this one live profile's: anything else is news to
        # record (a new customer, a new number) or a merge to follow.
        if len(owners) != len(keys) or len({row["id"] for row in owners}) != 1 or owners[0]["merged_into"]:
            return None
        verification = _verification(request)
        if verification is None:
            return None
        customer = KnownCustomer(owners[0]["id"], owners[0]["display_name"], owners[0]["tier"])
        verdict = classify(
            f"{request.subject}\n{request.body}",
            await rules.current_on_driver(connection, db.engine.url),
            tier=Tier(customer.tier),
            kind=request.kind,
            priority=request.priority,
        )
        contact, data = compose(
            request,
            customer=customer,
            verdict=verdict,
            verification=verification,
            purchase=None,
            external_id=None,
            now=clock.now(),
        )
        _, event = outbox.row(EVENT, data, subject=str(contact.id))
        recorded = Recorded(contact, customer)
        body = respond(recorded)
        row = contact_row(contact)
        row["attachments"] = json.dumps(row["attachments"], ensure_ascii=False)
        args = [row[c] for c in _CONTACT_FIELDS] + [event[c] for c in _OUTBOX_FIELDS]
        if idempotency.key is None:
            await connection.execute(_WRITE, *args)
        else:
            remembered = idempotency.row(status=201, body=body.model_dump(mode="json"))
            args += [remembered[c] for c in _REMEMBERED_FIELDS]
            try:
                await connection.execute(_WRITE_REMEMBERING, *args)
            except asyncpg.UniqueViolationError as exc:
                if exc.table_name == "idempotency_keys":
                    raise in_flight() from exc
                raise
    outbox.committed()
    return body


def _verification(request: ContactCreate) -> tuple[VerificationMethod, bool, str | None] | None:
    """The outcome of the verification the agent reports, if the lookup settles it (every identifier
    given is on the profile, so a number or address given is the customer's)."""
    method = request.verification.method
    if method == VerificationMethod.NONE:
        return method, False, None
    if method in IDENTIFIER_CHECKS:
        kind, failure = IDENTIFIER_CHECKS[method]
        return (method, True, None) if given_identifier(request.customer, kind) else (method, False, failure)
    return None
