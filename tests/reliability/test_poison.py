"""Poison messages of every kind while real traffic flows: each is dead-lettered with its reason, the
consumer goes on, and `python -m services replay-dead-letters` puts a repaired one back to be applied."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from tests.conftest import eventually
from tests.integration.conftest import cloudevent
from tests.reliability.harness import ROOT, record_report, settle

pytestmark = pytest.mark.timeout(300)

UPSERT = "crm.customer.upserted.v1"
SALE = "sales.purchase.recorded.v1"

# What arrives, and the words its dead-letter reason must contain for an operator to understand it.
POISON: dict[str, tuple[bytes, str]] = {
    "not JSON": (b"{customer: 'unquoted'", "not JSON"),
    "not a CloudEvent": (json.dumps({"name": "张伟", "phone": "13800138000"}).encode(), "not a CloudEvent"),
    "unknown type": (cloudevent("crm.customer.deleted.v9", {"external_id": "C-1"}), "unknown event type"),
    "schema-invalid data": (cloudevent(UPSERT, {"external_id": "", "name": 5}), "external_id"),
    "5 MB body": (cloudevent(UPSERT, {"external_id": "C-2", "name": "张" * 1_750_000}), "exceeds"),
    "invalid UTF-8": (b'{"specversion": "1.0", "id": "\xff\xfe"}', "UTF-8"),
}


async def test_poison_dead_lettered_with_reasons_and_repaired_ones_replayed(distributed) -> None:
    # Short retries for intake so an event that cannot apply yet is parked within a second.
    platform = await distributed(intake={"KEFU_RETRY_DELAYS_MS": "[100,100,100,100]"})
    load = platform.load(5)
    for body, _ in POISON.values():
        await platform.broker.publish_raw(UPSERT, body, content_type="application/cloudevents+json")
    # A sale for a customer the CRM has not sent yet: valid, but it cannot apply until the customer exists.
    sale = {
        "customer": {"external_id": "CRM-LATE"},
        "product": "滚筒洗衣机",
        "model": "XQG100",
        "serial": "SN-RELIABILITY-1",
        "purchased_at": "2026-10-01",
        "order_id": "SO-1",
    }
    await platform.broker.publish_raw(SALE, cloudevent(SALE, sale, source="/erp"))
    # The consumer goes on: a good event after the poison is applied.
    good = {"external_id": "CRM-GOOD", "name": "李娜", "phones": ["13911112222"]}
    await platform.broker.publish_raw(UPSERT, cloudevent(UPSERT, good))

    async def profile(external_id: str) -> bool:
        return bool(
            await platform.scalar(
                "intake",
                "SELECT count(*) FROM customer_identifiers WHERE value = $1",
                external_id,
            )
        )

    await eventually(lambda: profile("CRM-GOOD"), timeout=30, every=0.5)

    async def all_dead() -> list | None:
        letters = await platform.transport.dead_letters("intake")
        return letters if len(letters) == len(POISON) + 1 else None

    letters = await eventually(all_dead, timeout=60, every=0.5)
    reasons = [letter.reason for letter in letters]
    for label, (_, words) in POISON.items():
        assert any(words in reason for reason in reasons), f"{label}: no reason mentions {words!r}: {reasons}"
    assert any("gave up after" in r and "CRM-LATE" in r for r in reasons), reasons

    # The repair: the CRM sends the customer; an operator puts the dead letters back.
    late = {"external_id": "CRM-LATE", "name": "王芳", "phones": ["13733334444"]}
    await platform.broker.publish_raw(UPSERT, cloudevent(UPSERT, late))
    await eventually(lambda: profile("CRM-LATE"), timeout=30, every=0.5)
    replay = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services",
        "replay-dead-letters",
        "--service",
        "intake",
        env=platform["intake"].env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    output = (await replay.communicate())[0].decode()
    assert replay.returncode == 0
    assert f"intake: replayed {len(POISON) + 1} dead letter(s)" in output

    async def purchase_applied() -> bool:
        query = "SELECT count(*) FROM purchases WHERE serial = $1"
        return bool(await platform.scalar("intake", query, sale["serial"]))

    await eventually(purchase_applied, timeout=30, every=0.5)
    await load.stop()
    # The repaired sale applied once; the poison is dead again with its reasons, nothing else is. Analytics
    # logs every event, so it refused the same six.
    result = await settle(platform, load, dead_expected=2 * len(POISON))
    assert [len(result.dead_letters[s]) for s in ("intake", "analytics")] == [len(POISON)] * 2
    assert result.clean
    await record_report(
        "poison-messages",
        {
            "what": "six kinds of poison and a not-yet-applicable sale published amid 5 contacts/s",
            "dead_lettered": len(letters),
            "reasons": sorted(reasons),
            "replayed": len(POISON) + 1,
            "repaired_and_applied": 1,
            **result.summary(),
        },
    )
