"""Meeting reports: action items become milestones, the report's deadline, and the client's answer."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from services.briefs.meeting_service import deemed_accepted_at, report_due_at
from services.briefs.workhours import AGENCY_TZ
from shared.clock import FrozenClock
from tests.conftest import bearer
from tests.unit.briefs.conftest import AE, NOW, add_client
from tests.unit.briefs.test_api_workflow import approved_creative_brief

ANALYST = bearer("analyst", sub="ann")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def shanghai(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=AGENCY_TZ)


def report(client_id: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "client_id": client_id,
        "title": "秋季上市周例会",
        "held_at": shanghai(2026, 11, 20, 15, 0).isoformat(),
        "attendees": [
            {"name": "Alice", "side": "agency", "role": "account_exec"},
            {"name": "李经理", "side": "client", "role": "品牌经理"},
        ],
        "summary": "确认了上市节奏。",
        "decisions": ["主画面改为暖色调", "上市日推迟到12月8日"],
        "action_items": [
            {"description": "出三版包装", "owner": "carol", "due_at": "2026-11-27T18:00:00+08:00"},
            {"description": "更新报价", "owner": "dave", "due_at": "2026-11-24T12:00:00+08:00"},
        ],
    }
    body.update(overrides)
    return body


async def issue(http: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await http.post("/v1/meetings", json=body, headers=AE)
    assert response.status_code == 201, response.text
    meeting: dict[str, Any] = response.json()
    return meeting


async def shown(http: httpx.AsyncClient, meeting_id: str) -> dict[str, Any]:
    response = await http.get(f"/v1/meetings/{meeting_id}", headers=AE)
    assert response.status_code == 200, response.text
    meeting: dict[str, Any] = response.json()
    return meeting


async def answer(http: httpx.AsyncClient, meeting_id: str, **body: Any) -> httpx.Response:
    return await http.post(f"/v1/meetings/{meeting_id}/client-response", json=body, headers=AE)


async def test_a_report_turns_each_action_item_into_its_owners_milestone(agency: httpx.AsyncClient) -> None:
    client_id = await add_client(agency)
    brief = await approved_creative_brief(agency, client_id)
    meeting = await issue(agency, report(client_id, brief_id=brief["id"]))

    assert [a["side"] for a in meeting["attendees"]] == ["agency", "client"]
    assert meeting["decisions"] == ["主画面改为暖色调", "上市日推迟到12月8日"]
    assert meeting["issued_by"] == "alice"
    assert at(meeting["issued_at"]) == NOW
    # Friday 15:00 → 3 h Friday, 8 h Monday and Tuesday, 5 h Wednesday.
    assert at(meeting["report_due_at"]) == shanghai(2026, 11, 25, 15, 0)
    assert meeting["issued_on_time"] is True
    assert meeting["status"] == "awaiting_client"

    items = {item["owner"]: item for item in meeting["action_items"]}
    assert set(items) == {"carol", "dave"}
    for owner, due in (("carol", shanghai(2026, 11, 27, 18, 0)), ("dave", shanghai(2026, 11, 24, 12, 0))):
        milestone = await agency.get(f"/v1/briefs/milestones/{items[owner]['milestone_id']}", headers=AE)
        assert milestone.status_code == 200, milestone.text
        m = milestone.json()
        assert (m["owner"], at(m["due_at"]), m["status"]) == (owner, due, "open")
        assert (m["kind"], m["meeting_id"], m["client_id"], m["brief_id"]) == (
            "action_item",
            meeting["id"],
            client_id,
            brief["id"],
        )
        assert m["name"] == items[owner]["description"]
    carols = await agency.get("/v1/briefs/milestones", params={"owner": "carol", "view": "all"}, headers=AE)
    assert [m["name"] for m in carols.json()["items"]] == ["出三版包装"]
    listed = await agency.get("/v1/meetings", params={"client_id": client_id}, headers=AE)
    assert [m["id"] for m in listed.json()["items"]] == [meeting["id"]]


async def test_silence_for_48_working_hours_is_acceptance(
    agency: httpx.AsyncClient, clock: FrozenClock
) -> None:
    client_id = await add_client(agency)
    meeting = await issue(agency, report(client_id))
    # Issued Monday 10:00: 7 h that day, 8 h on each of the next four days, 8 h the Monday after,
    # and the last hour on Tuesday 1 December.
    deemed = shanghai(2026, 12, 1, 10, 0)
    assert at(meeting["deemed_accepted_at"]) == deemed

    clock.set(deemed - timedelta(minutes=1))
    assert (await shown(agency, meeting["id"]))["status"] == "awaiting_client"
    clock.set(deemed)
    assert (await shown(agency, meeting["id"]))["status"] == "deemed_accepted"
    listed = await agency.get("/v1/meetings", params={"client_id": client_id}, headers=AE)
    assert listed.json()["items"][0]["status"] == "deemed_accepted"

    late = await answer(agency, meeting["id"], response="commented", comments="上市日不对")
    assert late.status_code == 409
    assert late.headers["content-type"].startswith("application/problem+json")
    after = await shown(agency, meeting["id"])
    assert (after["status"], after["client_comments"], after["responded_at"]) == (
        "deemed_accepted",
        None,
        None,
    )


async def test_the_clients_acceptance_is_recorded_once(agency: httpx.AsyncClient, clock: FrozenClock) -> None:
    client_id = await add_client(agency)
    meeting = await issue(agency, report(client_id))
    clock.advance(timedelta(hours=3))
    accepted = await answer(agency, meeting["id"], response="accepted")
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "accepted"
    assert at(accepted.json()["responded_at"]) == NOW + timedelta(hours=3)

    for again in ({"response": "accepted"}, {"response": "commented", "comments": "补充一点"}):
        repeat = await answer(agency, meeting["id"], **again)
        assert repeat.status_code == 409, again
        assert repeat.headers["content-type"].startswith("application/problem+json")
    clock.advance(timedelta(days=30))
    after = await shown(agency, meeting["id"])
    assert (after["status"], after["client_comments"]) == ("accepted", None)
    assert at(after["responded_at"]) == NOW + timedelta(hours=3)


async def test_the_clients_comments_are_recorded_and_shown(agency: httpx.AsyncClient) -> None:
    client_id = await add_client(agency)
    meeting = await issue(agency, report(client_id))
    before = await agency.get(f"/v1/meetings/{meeting['id']}", headers=AE)

    for bad in (
        {"response": "commented"},
        {"response": "commented", "comments": "   "},
        {"response": "maybe"},
        {"response": "accepted", "by": "李经理"},
        {},
    ):
        refused = await answer(agency, meeting["id"], **bad)
        assert refused.status_code == 422, bad
        assert refused.headers["content-type"].startswith("application/problem+json")
    unchanged = await agency.get(f"/v1/meetings/{meeting['id']}", headers=AE)
    assert unchanged.headers["ETag"] == before.headers["ETag"]
    assert unchanged.json()["status"] == "awaiting_client"
    assert unchanged.json()["responded_at"] is None

    commented = await answer(agency, meeting["id"], response="commented", comments="上市日应为12月10日")
    assert commented.status_code == 200, commented.text
    again = await shown(agency, meeting["id"])
    assert (again["status"], again["client_comments"]) == ("commented", "上市日应为12月10日")
    assert at(again["responded_at"]) == NOW
    assert (await answer(agency, meeting["id"], response="accepted")).status_code == 409
    assert (await shown(agency, meeting["id"]))["status"] == "commented"
    unknown = await answer(agency, str(uuid.UUID(int=3)), response="accepted")
    assert unknown.status_code == 404


async def test_a_report_issued_after_national_day_is_late(agency: httpx.AsyncClient) -> None:
    client_id = await add_client(agency)
    # Wednesday 30 September 16:00: 2 h that day, 1–7 October off, 8 h on the 8th and the 9th,
    # and the last 6 h on Saturday 10 October, a make-up working day.
    meeting = await issue(
        agency,
        report(client_id, held_at=shanghai(2026, 9, 30, 16, 0).isoformat(), action_items=[]),
    )
    assert at(meeting["report_due_at"]) == shanghai(2026, 10, 10, 16, 0)
    assert meeting["issued_on_time"] is False
    assert meeting["action_items"] == []


async def test_bad_reports_are_refused_and_write_nothing(agency: httpx.AsyncClient) -> None:
    client_id = await add_client(agency)
    other_id = await add_client(agency, "北京某某饮料")
    others_brief = await approved_creative_brief(agency, other_id)
    item = {"description": "出三版包装", "owner": "carol", "due_at": "2026-11-27T18:00:00+08:00"}
    cases: list[dict[str, Any]] = [
        report(client_id, held_at=(NOW + timedelta(hours=1)).isoformat()),  # not held yet
        report(client_id, held_at="2026-11-20T15:00:00"),  # no time zone
        report(client_id, attendees=[]),
        report(client_id, attendees=[{"name": "Alice", "side": "vendor"}]),
        report(client_id, title=""),
        report(client_id, action_items=[{**item, "owner": ""}]),
        report(client_id, action_items=[{k: v for k, v in item.items() if k != "owner"}]),
        report(client_id, action_items=[{**item, "due_at": "2026-11-27T18:00:00"}]),
        # An action item cannot fall due before the meeting that set it.
        report(client_id, action_items=[item, {**item, "due_at": "2026-11-19T10:00:00+08:00"}]),
        report(client_id, brief_id=others_brief["id"]),
        report(client_id, decisions="改色调"),
        report(client_id, colour="red"),
    ]
    for body in cases:
        response = await agency.post("/v1/meetings", json=body, headers=AE)
        assert response.status_code == 422, (body, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
    unknown = await agency.post("/v1/meetings", json=report(str(uuid.UUID(int=4))), headers=AE)
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("application/problem+json")
    forbidden = await agency.post("/v1/meetings", json=report(client_id), headers=ANALYST)
    assert forbidden.status_code == 403

    listed = await agency.get("/v1/meetings", params={"client_id": client_id}, headers=AE)
    assert listed.json()["items"] == []
    milestones = await agency.get(f"/v1/clients/{client_id}/milestones", params={"view": "all"}, headers=AE)
    assert [m for m in milestones.json()["items"] if m["kind"] == "action_item"] == []
    carols = await agency.get("/v1/briefs/milestones", params={"owner": "carol", "view": "all"}, headers=AE)
    assert carols.json()["items"] == []


def test_a_report_is_due_24_working_hours_after_the_meeting() -> None:
    # Across a weekend: Friday 15:00 → Wednesday 15:00.
    assert report_due_at(shanghai(2026, 11, 20, 15, 0)) == shanghai(2026, 11, 25, 15, 0)
    # A meeting on a Saturday evening counts from Monday morning.
    assert report_due_at(shanghai(2026, 11, 21, 20, 0)) == shanghai(2026, 11, 25, 18, 0)
    # Spring Festival: 1 h on Friday 13 February, 8 h on Saturday the 14th (a make-up working day),
    # 15–23 February off, 8 h on the 24th and the last 7 h on the 25th.
    assert report_due_at(shanghai(2026, 2, 13, 17, 0)) == shanghai(2026, 2, 25, 17, 0)
    # Given in UTC, answered in UTC, counted in Shanghai office hours.
    held = datetime(2026, 11, 20, 7, 0, tzinfo=UTC)  # 15:00 in Shanghai
    due = report_due_at(held)
    assert due.tzinfo == UTC
    assert due == shanghai(2026, 11, 25, 15, 0)


def test_a_report_stands_accepted_48_working_hours_after_issue() -> None:
    # Friday 18 September at close: Sunday the 20th is a make-up working day, Friday the 25th is
    # Mid-autumn: 8 h on the 20th, 32 h Monday to Thursday, the last 8 h on Monday the 28th.
    assert deemed_accepted_at(shanghai(2026, 9, 18, 18, 0)) == shanghai(2026, 9, 28, 18, 0)
    # Issued during lunch: 5 h from 13:00 that day, 40 h over the next five, the last 3 h by noon.
    assert deemed_accepted_at(shanghai(2026, 11, 23, 12, 30)) == shanghai(2026, 12, 1, 12, 0)
    # Issued on New Year's Eve: 1–3 January off, Sunday the 4th a make-up working day.
    assert deemed_accepted_at(shanghai(2025, 12, 31, 17, 0)) == shanghai(2026, 1, 9, 17, 0)
