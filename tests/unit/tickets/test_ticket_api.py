"""Tickets over HTTP on the embedded platform: lifecycle actions, the quote gate, SLA clocks, bad input."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import ADMIN, AGENT, bearer

SUPERVISOR = bearer("supervisor", sub="sue")


async def open_ticket(client: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    body = {"subject": "发票开错了", "kind": "complaint", "channel": "email", **overrides}
    response = await client.post("/v1/tickets", json=body, headers=AGENT)
    assert response.status_code == 201, response.text
    ticket: dict[str, Any] = response.json()
    return ticket


async def act(
    client: httpx.AsyncClient, ticket_id: str, action: str, body: Any = None, **kw: Any
) -> httpx.Response:
    return await client.post(f"/v1/tickets/{ticket_id}/{action}", json=body, headers=kw.get("headers", AGENT))


async def test_complaint_gets_24h_and_48h_clocks_and_a_reply_meets_first_response(
    client: httpx.AsyncClient,
) -> None:
    ticket = await open_ticket(client)
    assert ticket["policy_name"] == "Complaint"
    sla = (await client.get(f"/v1/tickets/{ticket['id']}/sla", headers=AGENT)).json()
    targets = {c["metric"]: c["target_seconds"] for c in sla["clocks"]}
    assert targets == {"first_response": 24 * 3600, "resolution": 48 * 3600}
    assert all(c["state"] == "running" for c in sla["clocks"])

    reply = await act(client, ticket["id"], "reply", {"body": "您好,我们已收到。"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["status"] == "in_progress"
    sla = (await client.get(f"/v1/tickets/{ticket['id']}/sla", headers=AGENT)).json()
    states = {c["metric"]: c["state"] for c in sla["clocks"]}
    assert states == {"first_response": "met", "resolution": "running"}


async def test_wait_on_customer_pauses_resolution_and_the_reply_resumes_it(client: httpx.AsyncClient) -> None:
    ticket = await open_ticket(client)
    await act(client, ticket["id"], "reply", {"body": "请提供订单号"})
    waiting = await act(client, ticket["id"], "wait-on-customer", {"reason": "order number"})
    assert waiting.json()["status"] == "waiting_customer"
    sla = (await client.get(f"/v1/tickets/{ticket['id']}/sla", headers=AGENT)).json()
    resolution = next(c for c in sla["clocks"] if c["metric"] == "resolution")
    assert resolution["state"] == "paused" and resolution["due_at"] is None
    back = await act(client, ticket["id"], "customer-replied", {"body": "订单号 123"})
    assert back.json()["status"] == "in_progress"
    sla = (await client.get(f"/v1/tickets/{ticket['id']}/sla", headers=AGENT)).json()
    resolution = next(c for c in sla["clocks"] if c["metric"] == "resolution")
    assert resolution["state"] == "running"
    assert [seg["state"] for seg in resolution["segments"]] == ["running", "paused", "running"]


async def test_illegal_action_is_409_with_the_allowed_ones(client: httpx.AsyncClient) -> None:
    ticket = await open_ticket(client)
    response = await act(client, ticket["id"], "close")
    assert response.status_code == 409
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "resolve" in problem["allowed"] and "close" not in problem["allowed"]


async def test_resolve_close_reopen_and_history(client: httpx.AsyncClient) -> None:
    ticket = await open_ticket(client, kind="inquiry")
    resolved = await act(
        client, ticket["id"], "resolve", {"resolution_code": "answered", "summary": "已解答"}
    )
    assert resolved.json()["status"] == "resolved"
    assert resolved.json()["follow_up_due_at"] is not None
    assert (await act(client, ticket["id"], "close")).json()["status"] == "closed"
    reopened = await act(client, ticket["id"], "reopen", {"reason": "问题再次出现"})
    assert reopened.json()["status"] == "reopened" and reopened.json()["reopen_count"] == 1
    sla = (await client.get(f"/v1/tickets/{ticket['id']}/sla", headers=AGENT)).json()
    cycles = sorted((c["cycle"], c["state"]) for c in sla["clocks"] if c["metric"] == "resolution")
    assert cycles == [(1, "met"), (2, "running")]
    history = (await client.get(f"/v1/tickets/{ticket['id']}/history", headers=AGENT)).json()["items"]
    assert [h["action"] for h in history] == ["open", "resolve", "close", "reopen"]


async def test_quote_gate_for_out_of_warranty_repair(client: httpx.AsyncClient) -> None:
    ticket = await open_ticket(client, kind="repair", in_warranty=False, product_model="XQG100")
    assert ticket["policy_name"] == "After-sales repair"
    blocked = await act(client, ticket["id"], "start-work")
    assert blocked.status_code == 409 and blocked.json()["allowed"] == ["quote"]
    quoted = await act(
        client,
        ticket["id"],
        "quote",
        {"amount": "280.00", "items": [{"description": "电机", "amount": "280.00"}]},
    )
    assert quoted.status_code == 200, quoted.text
    assert (await act(client, ticket["id"], "start-work")).json()["allowed"] == [
        "accept_quote",
        "decline_quote",
    ]
    assert (await act(client, ticket["id"], "accept-quote")).status_code == 200
    started = await act(client, ticket["id"], "start-work")
    assert started.status_code == 200 and started.json()["status"] == "in_progress"
    onsite = await act(
        client,
        ticket["id"],
        "dispatch",
        {"mode": "on_site", "appointment_at": "2030-01-02T02:00:00Z", "engineer": "王工"},
    )
    assert onsite.json()["service_mode"] == "on_site"
    done = await act(
        client,
        ticket["id"],
        "resolve",
        {"resolution_code": "fixed", "summary": "换电机", "outcome": "repaired"},
    )
    assert done.json()["outcome"] == "repaired"


async def test_declined_quote_resolves_as_declined(client: httpx.AsyncClient) -> None:
    ticket = await open_ticket(client, kind="repair", in_warranty=False)
    await act(client, ticket["id"], "quote", {"amount": "99.50"})
    declined = await act(client, ticket["id"], "decline-quote")
    assert declined.json()["status"] == "resolved" and declined.json()["resolution_code"] == "declined"


async def test_in_warranty_repair_needs_no_quote(client: httpx.AsyncClient) -> None:
    ticket = await open_ticket(client, kind="repair", in_warranty=True)
    assert (await act(client, ticket["id"], "start-work")).status_code == 200
    assert (await act(client, ticket["id"], "quote", {"amount": "10"})).status_code == 409


async def test_manual_escalation_raises_priority_and_moves_to_supervisors(client: httpx.AsyncClient) -> None:
    ticket = await open_ticket(client, assignee="alice")
    escalated = await act(client, ticket["id"], "escalate", {"reason": "客户要求主管处理"})
    body = escalated.json()
    assert body["escalation_level"] == 1 and body["priority"] == "high" and body["group"] == "supervisors"
    assert body["version"] == ticket["version"] + 1


async def test_lists_filter_and_sort_by_due(client: httpx.AsyncClient) -> None:
    slow = await open_ticket(client, kind="inquiry")
    fast = await open_ticket(client, kind="repair", in_warranty=True, assignee="bob")
    by_due = (await client.get("/v1/tickets", params={"sort": "due"}, headers=AGENT)).json()["items"]
    assert [t["id"] for t in by_due] == [fast["id"], slow["id"]]
    mine = (await client.get("/v1/tickets", params={"assignee": "bob"}, headers=AGENT)).json()["items"]
    assert [t["id"] for t in mine] == [fast["id"]]
    assert (await client.get("/v1/tickets", params={"sla": "breached"}, headers=AGENT)).json()["items"] == []


async def test_stale_if_match_is_412(client: httpx.AsyncClient) -> None:
    ticket = await open_ticket(client)
    await act(client, ticket["id"], "note", {"body": "内部备注"})
    response = await client.post(
        f"/v1/tickets/{ticket['id']}/note", json={"body": "again"}, headers={**AGENT, "If-Match": 'W/"1"'}
    )
    assert response.status_code == 412


async def test_bad_input_is_a_problem_not_a_500(client: httpx.AsyncClient) -> None:
    assert (
        await client.post("/v1/tickets", json={"subject": "x", "kind": "feedback"}, headers=AGENT)
    ).status_code == 422
    ticket = await open_ticket(client)
    assert (await act(client, ticket["id"], "reply", {"body": ""})).status_code == 422
    assert (await act(client, ticket["id"], "assign", {})).status_code == 422
    assert (await client.get("/v1/tickets/not-a-uuid", headers=AGENT)).status_code == 422
    assert (await client.get("/v1/tickets", params={"cursor": "%%%"}, headers=AGENT)).status_code == 400
    bad_policy = {"name": "x", "position": 1, "targets": {}}
    assert (await client.post("/v1/sla-policies", json=bad_policy, headers=ADMIN)).status_code == 422
    bad_calendar = {"name": "c", "hours": {"mon": [["25:00", "26:00"]]}}
    assert (await client.post("/v1/calendars", json=bad_calendar, headers=ADMIN)).status_code == 422


async def test_policies_are_seeded_and_a_new_one_applies(client: httpx.AsyncClient) -> None:
    before = await open_ticket(client, category="billing")  # policies read (and kept) before the change
    assert before["policy_name"] != "Billing"
    policies = (await client.get("/v1/sla-policies", headers=AGENT)).json()
    assert [p["name"] for p in policies][:3] == ["Urgent repair", "VIP repair", "After-sales repair"]
    calendar = await client.post(
        "/v1/calendars",
        json={"name": "Shanghai office", "hours": {"mon": [["09:00", "18:00"]]}, "china_holidays": True},
        headers=SUPERVISOR,
    )
    assert calendar.status_code == 201, calendar.text
    created = await client.post(
        "/v1/sla-policies",
        json={
            "name": "Billing",
            "position": 1,
            "conditions": {"categories": ["billing"]},
            "targets": {"first_response": 600, "resolution": 3600},
            "calendar_id": calendar.json()["id"],
            "warning": {"lead_seconds": 60},
        },
        headers=SUPERVISOR,
    )
    assert created.status_code == 201, created.text
    assert (await client.post("/v1/sla-policies", json={}, headers=AGENT)).status_code == 403
    ticket = await open_ticket(client, category="billing")
    assert ticket["policy_name"] == "Billing"

    # A replaced policy decides the very next ticket.
    billing = created.json()
    replaced = await client.put(
        f"/v1/sla-policies/{billing['id']}",
        json={
            **{k: billing[k] for k in ("name", "position", "targets", "calendar_id", "warning")},
            "conditions": {"categories": ["invoices"]},
        },
        headers={**SUPERVISOR, "If-Match": created.headers["ETag"]},
    )
    assert replaced.status_code == 200, replaced.text
    assert (await open_ticket(client, category="billing"))["policy_name"] != "Billing"
    assert (await open_ticket(client, category="invoices"))["policy_name"] == "Billing"
