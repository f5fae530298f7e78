"""Route dependencies briefs adds to the shared ones: who is acting, and the service's timers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header

from services.briefs.traffic import NoTimers, TimerPort
from shared.app import RuntimeDep


def _timers(runtime: RuntimeDep) -> TimerPort:
    return runtime.timers if runtime.timers is not None else NoTimers()


TimersDep = Annotated[TimerPort, Depends(_timers)]
IfMatch = Annotated[str | None, Header(alias="If-Match", description="The ETag you read; 412 if stale.")]
