"""AMQP transport on RabbitMQ (aio-pika): confirmed publishing, quorum queues, retry queues, dead letters.

Topology per consuming service `S` (prefix `kefu`):
- `kefu.S`            quorum queue bound to the `kefu.events` topic exchange for what S consumes;
- `kefu.S.retry.<n>`  quorum queues with a fixed TTL each, dead-lettering back into `kefu.S` — one queue per
                      backoff step, because a per-message TTL only expires at the head of a queue;
- `kefu.S.dead`       quorum queue of messages that will not be handled, each with `x-kefu-reason`.
A message is acked only after its outcome is settled — its handler's transaction committed, or its retry
or dead-letter copy confirmed — so a crash in between redelivers it instead of losing it. Acks are
coalesced per channel: the settled deliveries at the head of the channel's unacked ones go in one
`basic.ack(multiple=True)` (a batch of a batch route is one ack), the others are acked one by one.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any, cast

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from aiormq.abc import DeliveredMessage
from pamqp.common import FieldTable

from shared.bus.base import (
    DeadLetter,
    Delivery,
    DeliveryHandler,
    Outcome,
    OutcomeKind,
    OutgoingMessage,
    PublishFailed,
)

log = logging.getLogger("kefu.bus.amqp")

ATTEMPT_HEADER = "x-kefu-attempt"
REASON_HEADER = "x-kefu-reason"
LAST_ERROR_HEADER = "x-kefu-last-error"
ROUTING_KEY_HEADER = "x-kefu-routing-key"
QUORUM: FieldTable = {"x-queue-type": "quorum"}
# `handler.submit(delivery, report)`: a handler that takes deliveries without a task each (shared/consumer).
Submit = Callable[[Delivery, Callable[[Outcome], None]], bool]


class AmqpTransport:
    def __init__(
        self,
        url: str,
        *,
        exchange: str = "kefu.events",
        queue_prefix: str = "kefu",
        prefetch: int = 64,
        concurrency: int = 16,
        retry_delays_ms: Sequence[int] = (1_000, 10_000, 60_000),
        publish_timeout: float = 10.0,
        connection_name: str = "kefu",
    ) -> None:
        self.url = url
        self.exchange_name = exchange
        self.queue_prefix = queue_prefix
        self.prefetch = prefetch
        self.concurrency = concurrency
        self.retry_delays_ms = list(retry_delays_ms)
        self.publish_timeout = publish_timeout
        self.connection_name = connection_name
        self._connection: AbstractRobustConnection | None = None
        # Consumers get a connection of their own: RabbitMQ's flow control blocks a whole connection, and a
        # publisher throttled on the connection its consumers ack through would stall both.
        self._consumer_connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._consume_channels: list[AbstractChannel] = []
        # Per underlying AMQP channel (delivery tags are per channel; a reconnect brings a new one).
        self._acks: weakref.WeakKeyDictionary[Any, _Acks] = weakref.WeakKeyDictionary()
        self._tasks: set[asyncio.Task[None]] = set()  # deliveries being handled or settled

    def queue_name(self, service: str, suffix: str = "") -> str:
        return f"{self.queue_prefix}.{service}{suffix}"

    def queue_names(self, service: str) -> list[str]:
        """The service's queue, its retry queues (one per backoff step) and its dead-letter queue."""
        retries = [self.queue_name(service, f".retry.{n}") for n in range(1, len(self.retry_delays_ms) + 1)]
        return [self.queue_name(service), *retries, self.queue_name(service, ".dead")]

    async def connect(self) -> None:
        self._connection = await self._connect("publish")
        self._publish_channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        self._exchange = await self._publish_channel.declare_exchange(
            self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )

    async def _connect(self, role: str) -> AbstractRobustConnection:
        return await aio_pika.connect_robust(
            self.url, client_properties={"connection_name": f"{self.connection_name} ({role})"}, timeout=10
        )

    async def close(self) -> None:
        for connection in (self._consumer_connection, self._connection):
            if connection is not None:
                await connection.close()
        self._connection = self._consumer_connection = None

    @property
    def is_connected(self) -> bool:
        consuming = self._consumer_connection is None or _alive(self._consumer_connection)
        return _alive(self._connection) and consuming

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        if self._exchange is None or not _alive(self._connection):
            raise PublishFailed({m.id for m in messages}, "not connected to the broker")
        exchange = self._exchange
        try:
            # One deadline for the batch: a confirm that has not come by then fails the whole batch (the
            # outbox sends it again; consumers' inboxes absorb the copies that did arrive).
            async with asyncio.timeout(self.publish_timeout):
                results = await asyncio.gather(
                    *(
                        exchange.publish(_to_amqp(m), routing_key=m.routing_key, mandatory=True)
                        for m in messages
                    ),
                    return_exceptions=True,
                )
        except TimeoutError:
            raise PublishFailed({m.id for m in messages}, "publisher confirm timed out") from None
        failed = {m.id: r for m, r in zip(messages, results, strict=True) if isinstance(r, BaseException)}
        if failed:
            first = next(iter(failed.values()))
            reason = _describe_publish_error(first)
            raise PublishFailed(set(failed), reason)

    async def _declare(
        self, channel: AbstractChannel, service: str, routing_keys: Sequence[str]
    ) -> AbstractQueue:
        exchange = await channel.declare_exchange(
            self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        main = self.queue_name(service)
        queue = await channel.declare_queue(main, durable=True, arguments=QUORUM)
        for key in routing_keys:
            await queue.bind(exchange, routing_key=key)
        for step, delay in enumerate(self.retry_delays_ms, start=1):
            retry_arguments: FieldTable = {
                **QUORUM,
                "x-message-ttl": delay,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": main,
                # At-least-once dead-lettering: the expired copy cannot vanish on the way back.
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            }
            await channel.declare_queue(
                self.queue_name(service, f".retry.{step}"), durable=True, arguments=retry_arguments
            )
        await channel.declare_queue(self.queue_name(service, ".dead"), durable=True, arguments=QUORUM)
        return queue

    async def consume(self, service: str, routing_keys: Sequence[str], handler: DeliveryHandler) -> None:
        if self._connection is None:
            raise RuntimeError("connect() first")
        if self._consumer_connection is None:
            self._consumer_connection = await self._connect("consume")
        channel = await self._consumer_connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=self.prefetch)
        self._consume_channels.append(channel)
        queue = await self._declare(channel, service, routing_keys)
        limit = asyncio.Semaphore(self.concurrency)
        # A handler that can take deliveries synchronously (a batching consumer) gets them right away; the
        # rest are awaited in a task each, at most `concurrency` at once.
        submit: Submit | None = getattr(handler, "submit", None)

        def on_message(message: _Incoming) -> None:
            self._acks_of(message).receive(message)
            delivery = message.delivery()
            if submit is not None:
                try:
                    if submit(delivery, partial(self._settle, channel, service, message, delivery)):
                        return
                except Exception:
                    log.exception("consumer could not take a delivery; handling it on its own")
            self._spawn(self._handle(limit, channel, service, message, delivery, handler))

        async def on_delivered(message: DeliveredMessage) -> None:
            on_message(_Incoming(message))

        # Consumed on the channel underneath aio-pika's: its message object and the task it adds per
        # delivery cost a third of the CPU of a delivery, at thousands a second. aio-pika still declares
        # and restores the topology; a reopened channel (after a reconnect) consumes again here.
        async def start(*_: Any) -> None:
            underlay = await channel.get_underlay_channel()
            await underlay.basic_consume(queue.name, on_delivered, no_ack=False)

        await start()
        cast(Any, channel).reopen_callbacks.add(start)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        _keep_running(self._tasks, work)

    async def _handle(
        self,
        limit: asyncio.Semaphore,
        channel: AbstractChannel,
        service: str,
        message: _Incoming,
        delivery: Delivery,
        handler: DeliveryHandler,
    ) -> None:
        async with limit:
            try:
                outcome = await handler(delivery)
            except Exception as exc:
                log.exception("consumer pipeline failed")
                outcome = Outcome.retry(f"{type(exc).__name__}: {exc}")
            await self._finish(channel, service, message, delivery, outcome)

    def _settle(
        self,
        channel: AbstractChannel,
        service: str,
        message: _Incoming,
        delivery: Delivery,
        outcome: Outcome,
    ) -> None:
        """A submitted delivery's outcome: acked now if handled, else forwarded (then acked) in a task."""
        if outcome.kind in (OutcomeKind.HANDLED, OutcomeKind.DUPLICATE):
            self._acks_of(message).settle(message)
        else:
            self._spawn(self._finish(channel, service, message, delivery, outcome))

    async def _finish(
        self,
        channel: AbstractChannel,
        service: str,
        message: _Incoming,
        delivery: Delivery,
        outcome: Outcome,
    ) -> None:
        """Settle a delivery: a copy to its retry or dead-letter queue first if need be, then the ack."""
        attempt, routing_key = delivery.attempt, delivery.routing_key
        try:
            if outcome.kind is OutcomeKind.RETRY and attempt <= len(self.retry_delays_ms):
                await self._forward(
                    channel,
                    message,
                    self.queue_name(service, f".retry.{attempt}"),
                    {
                        ATTEMPT_HEADER: attempt + 1,
                        LAST_ERROR_HEADER: outcome.reason[:1000],
                        ROUTING_KEY_HEADER: routing_key,
                    },
                )
            elif outcome.kind in (OutcomeKind.RETRY, OutcomeKind.DEAD):
                reason = outcome.reason
                if outcome.kind is OutcomeKind.RETRY:
                    reason = f"gave up after {attempt} attempts: {reason}"
                await self._forward(
                    channel,
                    message,
                    self.queue_name(service, ".dead"),
                    {
                        ATTEMPT_HEADER: attempt,
                        REASON_HEADER: reason[:2000],
                        ROUTING_KEY_HEADER: routing_key,
                        "x-kefu-dead-at": datetime.now(UTC).isoformat(),
                    },
                )
                log.warning("dead-lettered %s: %s", message.message_id, reason)
            self._acks_of(message).settle(message)
        except Exception:
            # The copy was not confirmed (or the channel died): leave the original to be redelivered.
            log.exception("could not settle message %s; it will be redelivered", message.message_id)
            self._acks_of(message).forget(message)
            if not channel.is_closed:
                await message.nack(requeue=True)

    def _acks_of(self, message: _Incoming) -> _Acks:
        acks = self._acks.get(message.channel)
        if acks is None:
            acks = self._acks[message.channel] = _Acks()
        return acks

    async def _forward(
        self, channel: AbstractChannel, message: _Incoming, queue: str, extra: dict[str, Any]
    ) -> None:
        copy = aio_pika.Message(
            body=message.body,
            headers={**(message.headers or {}), **extra},
            content_type=message.content_type,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            type=message.type,
            timestamp=message.timestamp,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await channel.default_exchange.publish(copy, routing_key=queue, mandatory=True)

    async def dead_letters(self, service: str, *, remove: bool = False) -> list[DeadLetter]:
        if self._connection is None:
            raise RuntimeError("connect() first")
        letters: list[DeadLetter] = []
        async with self._connection.channel() as channel:
            queue = await channel.declare_queue(
                self.queue_name(service, ".dead"), durable=True, arguments=QUORUM
            )
            held: list[AbstractIncomingMessage] = []
            while (message := await queue.get(no_ack=False, fail=False)) is not None:
                headers = dict(message.headers or {})
                letters.append(
                    DeadLetter(
                        message_id=message.message_id,
                        routing_key=str(headers.get(ROUTING_KEY_HEADER, message.routing_key or "")),
                        reason=str(headers.get(REASON_HEADER, "")),
                        attempts=_attempt(headers),
                        body=message.body,
                    )
                )
                held.append(message)
            for message in held:
                if remove:
                    await message.ack()
                else:
                    await message.nack(requeue=True)
        return letters

    async def replay_dead_letters(self, service: str, limit: int | None = None) -> int:
        if self._connection is None:
            raise RuntimeError("connect() first")
        replayed = 0
        async with self._connection.channel(publisher_confirms=True) as channel:
            queue = await channel.declare_queue(
                self.queue_name(service, ".dead"), durable=True, arguments=QUORUM
            )
            # Only what is dead now: a replayed letter that fails again lands back in this queue, and
            # must not be picked up a second time by the same run.
            waiting = queue.declaration_result.message_count or 0
            limit = waiting if limit is None else min(limit, waiting)
            while replayed < limit:
                message = await queue.get(no_ack=False, fail=False)
                if message is None:
                    break
                headers = {
                    k: v
                    for k, v in (message.headers or {}).items()
                    if k not in (ATTEMPT_HEADER, REASON_HEADER, LAST_ERROR_HEADER, "x-kefu-dead-at")
                }
                await channel.default_exchange.publish(
                    aio_pika.Message(
                        body=message.body,
                        headers=headers,
                        content_type=message.content_type,
                        message_id=message.message_id,
                        correlation_id=message.correlation_id,
                        type=message.type,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=self.queue_name(service),
                    mandatory=True,
                )
                await message.ack()
                replayed += 1
        return replayed

    async def queue_depths(self, service: str) -> dict[str, int]:
        """Messages waiting in the service's queues (for readiness details, tests and load reports)."""
        if self._connection is None:
            raise RuntimeError("connect() first")
        depths: dict[str, int] = {}
        async with self._connection.channel() as channel:
            for name in self.queue_names(service):
                declared = await channel.declare_queue(name, passive=True)
                depths[name] = declared.declaration_result.message_count or 0
        return depths

    async def delete_topology(self, service: str) -> None:
        """Remove a service's queues (tests use throw-away prefixes and clean up after themselves)."""
        if self._connection is None:
            return
        async with self._connection.channel() as channel:
            for name in self.queue_names(service):
                await channel.queue_delete(name)


class _Acks:
    """The unacked deliveries of one channel, in delivery order, and which of them are settled.

    A settled delivery is acked at the end of the event-loop turn that settled it: with every delivery
    before it settled too, in one `basic.ack(multiple=True)` for the whole run (a batch's outcomes are
    settled in the same turn, after its transaction committed); otherwise on its own, as before, so a
    slow delivery never holds back the acks (and the prefetch window) of the ones after it.
    """

    def __init__(self) -> None:
        self.unacked: deque[_Incoming] = deque()
        self.settled: set[int] = set()
        self.acked: set[int] = set()  # acked on their own while an earlier delivery was unsettled
        self.flushing = False
        self.tasks: set[asyncio.Task[None]] = set()

    def receive(self, message: _Incoming) -> None:
        self.unacked.append(message)

    def settle(self, message: _Incoming) -> None:
        self.settled.add(_tag(message))
        if not self.flushing:
            self.flushing = True
            asyncio.get_running_loop().call_soon(self._flush)

    def forget(self, message: _Incoming) -> None:
        """A delivery nacked back to the queue: no longer ours to ack."""
        self.acked.add(_tag(message))
        self.settled.add(_tag(message))

    def _flush(self) -> None:
        self.flushing = False
        last: _Incoming | None = None
        while self.unacked and _tag(self.unacked[0]) in self.settled:
            message = self.unacked.popleft()
            tag = _tag(message)
            self.settled.discard(tag)
            if tag in self.acked:
                self.acked.discard(tag)
            else:
                last = message
        if last is not None:
            self._send(last, multiple=True)
        for message in self.unacked:
            tag = _tag(message)
            if tag in self.settled and tag not in self.acked:
                self.acked.add(tag)
                self._send(message, multiple=False)

    def _send(self, message: _Incoming, *, multiple: bool) -> None:
        _keep_running(self.tasks, _ack(message, multiple=multiple))


def _keep_running(tasks: set[asyncio.Task[None]], work: Coroutine[Any, Any, None]) -> None:
    """Run `work` in a task held in `tasks` until it ends (the loop keeps only weak references)."""
    task = asyncio.get_running_loop().create_task(work)
    tasks.add(task)
    task.add_done_callback(tasks.discard)


async def _ack(message: _Incoming, *, multiple: bool) -> None:
    try:
        await message.ack(multiple=multiple)
    except Exception:
        # The channel is gone: the broker redelivers what it had not been told about.
        log.warning("could not ack message %s; it will be redelivered", message.message_id, exc_info=True)


def _tag(message: _Incoming) -> int:
    return message.delivery_tag or 0


def _alive(connection: AbstractRobustConnection | None) -> bool:
    return connection is not None and not connection.is_closed and connection.connected.is_set()


class _Incoming:
    """A consumed message as aiormq delivers it: what the transport reads of it, how it is settled."""

    __slots__ = (
        "body",
        "channel",
        "content_type",
        "correlation_id",
        "delivery_tag",
        "headers",
        "message_id",
        "routing_key",
        "timestamp",
        "type",
    )

    def __init__(self, message: DeliveredMessage) -> None:
        properties = message.header.properties
        self.channel = message.channel  # delivery tags are per channel
        self.delivery_tag: int = message.delivery_tag or 0
        self.routing_key = message.routing_key
        self.body = message.body
        self.headers: dict[str, Any] = dict(properties.headers or {})
        self.content_type = properties.content_type
        self.message_id = properties.message_id
        self.correlation_id = properties.correlation_id
        self.type = properties.message_type
        self.timestamp = properties.timestamp

    def delivery(self) -> Delivery:
        headers = self.headers
        return Delivery(
            body=self.body,
            routing_key=str(headers.get(ROUTING_KEY_HEADER) or self.routing_key or ""),
            headers=headers,
            content_type=self.content_type,
            message_id=self.message_id,
            attempt=_attempt(headers),
        )

    async def ack(self, *, multiple: bool = False) -> None:
        await self.channel.basic_ack(self.delivery_tag, multiple=multiple)

    async def nack(self, *, requeue: bool = True) -> None:
        await self.channel.basic_nack(self.delivery_tag, requeue=requeue)


def _attempt(headers: dict[str, Any]) -> int:
    value = headers.get(ATTEMPT_HEADER, 1)
    return value if isinstance(value, int) and value > 0 else 1


def _to_amqp(message: OutgoingMessage) -> aio_pika.Message:
    return aio_pika.Message(
        body=message.body,
        content_type=message.content_type,
        message_id=message.id,
        type=message.routing_key,
        timestamp=message.timestamp,
        correlation_id=message.correlation_id,
        headers=dict(message.headers),
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


def _describe_publish_error(error: BaseException) -> str:
    if isinstance(error, aio_pika.exceptions.DeliveryError):
        frame = error.frame
        reply = getattr(frame, "reply_text", None)
        if reply == "NO_ROUTE" or "NO_ROUTE" in str(error):
            return "unroutable: no queue is bound to this event type"
        return f"not confirmed by the broker: {reply or error}"
    if isinstance(error, TimeoutError):
        return "publisher confirm timed out"
    return f"{type(error).__name__}: {error}"
