"""Recording contacts from every channel, and the rules that classify them."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Query, Request, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import ValidationError

from services.intake import contacts, known_caller, rules, views
from services.intake.contacts import Recorded
from services.intake.models import Contact, Customer
from services.intake.schemas import ContactCreate, ContactOut, RuleIn, RulesOut
from shared.app import ClockDep, OutboxDep, SessionDep, runtime_of
from shared.auth import current_principal, require
from shared.contracts.common import Channel, ContactKind
from shared.errors import problem_responses
from shared.idempotency import Idempotency, IdempotencyDep, fingerprint
from shared.pagination import Cursor, Limit, Page, keyset_page

router = APIRouter(prefix="/v1/contacts", tags=["contacts"], responses=problem_responses(401, 403))

WRITE = "contacts:write"
_require_write = require(WRITE)
_IDEMPOTENCY_KEY_MAX = 200  # as declared on shared.idempotency's header


async def record_contact(
    body: ContactCreate, session: SessionDep, outbox: OutboxDep, clock: ClockDep, idempotency: IdempotencyDep
) -> Any:
    """Record a contact from any channel; the customer is found by id, phone, e-mail or handle, or created."""
    if (replay := await idempotency.replay(session)) is not None:
        return replay
    out = views.contact_out(await contacts.record(session, body, outbox=outbox, clock=clock))
    await idempotency.remember(session, status=201, body=out.model_dump(mode="json"))
    return out


async def _record_directly(request: Request) -> Response | None:
    """`record_contact` for a well-formed request, its dependencies called here rather than solved.

    Contacts are the platform's busiest write, and FastAPI's general dependency solving and response
    re-validation cost about as much as the rest of such a request. The same dependency functions run in
    the order FastAPI runs them, so authentication, its refusals and what it adds to the response are
    theirs. Whatever FastAPI would refuse before them or by validation — a body that is not JSON or does
    not validate, an over-long Idempotency-Key, another content type — answers None, and the declared
    route handles the request, so every error keeps its one source.
    """
    if request.app.dependency_overrides:
        return None
    headers = request.headers
    media_type = headers.get("content-type", "").partition(";")[0].strip().lower()
    key = headers.get("idempotency-key")
    if media_type != "application/json" or (key is not None and len(key) > _IDEMPOTENCY_KEY_MAX):
        return None
    raw = await request.body()
    try:
        body = ContactCreate.model_validate(await request.json())
    except (ValueError, ValidationError):  # JSON and UTF-8 decoding errors are ValueErrors
        return None
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    credentials = credentials.strip()
    bearer = (
        HTTPAuthorizationCredentials(scheme=scheme, credentials=credentials)
        if scheme.lower() == "bearer" and credentials
        else None
    )
    # FastAPI's sub-response: what dependencies add to the response (rate-limit headers, say).
    added = Response()
    del added.headers["content-length"]
    principal = await current_principal(
        request=request, response=added, bearer=bearer, api_key=headers.get("x-api-key") or None
    )
    await _require_write.dependency(principal)
    runtime = runtime_of(request)
    idempotency = Idempotency(key, principal.subject, fingerprint(request, raw))
    out: Any = None
    if not runtime.db.is_sqlite:
        out = await known_caller.record(
            runtime.db,
            body,
            outbox=runtime.outbox,
            clock=runtime.clock,
            idempotency=idempotency,
            respond=views.contact_out,
        )
    if out is None:
        async with runtime.db.transaction() as session:
            out = await record_contact(body, session, runtime.outbox, runtime.clock, idempotency)
    if isinstance(out, Response):
        return out  # a replay, passed on as FastAPI passes on a returned response
    # Serialised as FastAPI serialises a `response_model` (by_alias, to JSON bytes), without validating
    # the model it was just given once more.
    response = Response(
        ContactOut.__pydantic_serializer__.to_json(out, by_alias=True),
        status_code=201,
        media_type="application/json",
    )
    response.headers.raw.extend(added.headers.raw)
    return response


class _DirectRoute(APIRoute):
    """The declared route (its OpenAPI, its errors), answering well-formed requests without FastAPI's
    dependency solving (see `_record_directly`)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        declared = super().get_route_handler()

        async def handle(request: Request) -> Response:
            direct = await _record_directly(request)
            return direct if direct is not None else await declared(request)

        return handle


router.add_api_route(
    "",
    record_contact,
    methods=["POST"],
    status_code=201,
    response_model=ContactOut,
    dependencies=[_require_write],
    responses=problem_responses(400, 404, 409, 413, 422),
    route_class_override=_DirectRoute,
)


@router.get("/classification-rules", response_model=RulesOut, dependencies=[require("contacts:read")])
async def list_rules(session: SessionDep) -> RulesOut:
    """The keyword rules that set a contact's kind and priority when the caller does not, in order."""
    current = await rules.current(session)
    return RulesOut(
        rules=[RuleIn(target=r.target, value=r.value, keywords=list(r.keywords)) for r in current]
    )


@router.put(
    "/classification-rules",
    response_model=RulesOut,
    dependencies=[require("classification:write")],
    responses=problem_responses(422),
)
async def replace_rules(body: RulesOut, session: SessionDep) -> RulesOut:
    """Replace the rules; the first rule whose keyword appears in the subject or body wins."""
    current = await rules.replace(session, body.rules)
    return RulesOut(
        rules=[RuleIn(target=r.target, value=r.value, keywords=list(r.keywords)) for r in current]
    )


@router.get(
    "/{contact_id}",
    response_model=ContactOut,
    dependencies=[require("contacts:read")],
    responses=problem_responses(404),
)
async def get_contact(contact_id: uuid.UUID, session: SessionDep) -> ContactOut:
    """One contact."""
    return views.contact_out(await contacts.get(session, contact_id))


@router.get("", response_model=Page[ContactOut], dependencies=[require("contacts:read")])
async def list_contacts(
    session: SessionDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    customer_id: Annotated[uuid.UUID | None, Query()] = None,
    channel: Annotated[Channel | None, Query()] = None,
    kind: Annotated[ContactKind | None, Query()] = None,
) -> Page[ContactOut]:
    """Contacts, newest first."""
    query = sa.select(Contact)
    for column, value in (
        (Contact.customer_id, customer_id),
        (Contact.channel, channel),
        (Contact.kind, kind),
    ):
        if value is not None:
            query = query.where(column == value)
    found, next_cursor = await keyset_page(session, query, key=Contact.id, limit=limit, cursor=cursor)
    owners = {
        c.id: c
        for c in (
            await session.execute(sa.select(Customer).where(Customer.id.in_({c.customer_id for c in found})))  # type: ignore[attr-defined]
        ).scalars()
    }
    return Page(
        items=[views.contact_out(Recorded(c, owners[c.customer_id])) for c in found], next_cursor=next_cursor
    )
