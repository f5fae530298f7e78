"""`python -m tests.reliability.crash_after_publish <service> --port P`: a service that dies mid-relay.

The process runs the real service, except that once the broker has confirmed a batch of outbox events the
process exits on the spot — after publishing, before the relay marks those rows as sent. The ids it
published are appended to `$KEFU_CRASH_RECORD` so the test can check that the restarted service sends
them again and that every consumer applies them once.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from services.cli import main
from shared.bus.amqp import AmqpTransport
from shared.bus.base import OutgoingMessage

_publish = AmqpTransport.publish


async def _publish_then_die(self: AmqpTransport, messages: Sequence[OutgoingMessage]) -> None:
    await _publish(self, messages)
    record = Path(os.environ["KEFU_CRASH_RECORD"])
    record.write_text("".join(f"{m.id}\n" for m in messages))  # noqa: ASYNC240 — the process ends here
    os._exit(137)  # no cleanup at all, like SIGKILL


if __name__ == "__main__":
    AmqpTransport.publish = _publish_then_die  # type: ignore[method-assign]
    service, *rest = sys.argv[1:]
    main(["serve", "--service", service, *rest])
