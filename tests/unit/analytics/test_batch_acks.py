"""Analytics' batches are acked to the broker together, and never before their outcome is settled."""

from __future__ import annotations

import asyncio
from typing import Any

from shared.bus.amqp import _Acks


class FakeMessage:
    def __init__(self, tag: int) -> None:
        self.delivery_tag = tag
        self.message_id = str(tag)
        self.acks: list[bool] = []

    async def ack(self, multiple: bool = False) -> None:
        self.acks.append(multiple)


def acked(messages: list[Any]) -> list[tuple[int, bool]]:
    return [(m.delivery_tag, multiple) for m in messages for multiple in m.acks]


async def settle_all(_: _Acks) -> None:
    for _ in range(3):  # the flush runs at the end of the turn, the acks in tasks after it
        await asyncio.sleep(0)


async def test_a_settled_run_from_the_head_is_one_multiple_ack() -> None:
    acks, messages = _Acks(), [FakeMessage(tag) for tag in range(1, 7)]
    for m in messages:
        acks.receive(m)  # type: ignore[arg-type]
    for m in messages[:4]:
        acks.settle(m)  # type: ignore[arg-type]
    await settle_all(acks)
    assert acked(messages) == [(4, True)]
    for m in messages[4:]:
        acks.settle(m)  # type: ignore[arg-type]
    await settle_all(acks)
    assert acked(messages) == [(4, True), (6, True)]


async def test_nothing_is_acked_before_it_is_settled_and_a_slow_head_holds_no_one_back() -> None:
    acks, messages = _Acks(), [FakeMessage(tag) for tag in range(1, 6)]
    for m in messages:
        acks.receive(m)  # type: ignore[arg-type]
    await settle_all(acks)
    assert acked(messages) == []
    for m in messages[2:]:  # the head (1, 2) is still being handled
        acks.settle(m)  # type: ignore[arg-type]
    await settle_all(acks)
    assert acked(messages) == [(3, False), (4, False), (5, False)]
    acks.settle(messages[0])  # type: ignore[arg-type]
    await settle_all(acks)
    assert messages[0].acks == [True]
    acks.settle(messages[1])  # type: ignore[arg-type]
    await settle_all(acks)
    # 2 is acked alone with `multiple`: 3–5 were acked already and are not acked twice.
    assert acked(messages) == [(1, True), (2, True), (3, False), (4, False), (5, False)]
    assert not acks.unacked and not acks.settled and not acks.acked


async def test_a_delivery_sent_back_to_the_queue_is_not_acked() -> None:
    acks, messages = _Acks(), [FakeMessage(tag) for tag in range(1, 4)]
    for m in messages:
        acks.receive(m)  # type: ignore[arg-type]
    acks.forget(messages[0])  # type: ignore[arg-type]
    acks.settle(messages[1])  # type: ignore[arg-type]
    await settle_all(acks)
    assert acked(messages) == [(2, True)]
    assert messages[0].acks == []
