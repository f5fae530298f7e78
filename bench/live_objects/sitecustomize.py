"""Counts a service's live Python objects during a load run, to tell a leak from garbage not yet collected.

Put this folder on PYTHONPATH and name a folder in LIVE_OBJECTS_DIR; every service process started then
whose command line names LIVE_OBJECTS_SERVICE (default `services.analytics`) writes, every
LIVE_OBJECTS_EVERY seconds (default 40), one line of JSON to `<dir>/<pid>.jsonl`: the objects the
collector tracks after a full collection, by type, and how many are new since the second sample. A leak
shows as a count that keeps rising; garbage awaiting a rare full collection (analytics raises the
collector's threshold) shows as RSS rising while this count stays flat. Python runs `sitecustomize` at
start-up, so nothing in the services knows about it. Objects frozen at start-up (`gc.freeze()`) are not
counted: they live as long as the process anyway.

A container that grows is still one tracked object, and strings and numbers are not tracked at all, so
each line also has the largest containers by length, the blocks Python's allocator holds (every object,
tracked or not), glibc's own account of its heap (bytes in use and bytes free inside it), and the
resident memory split into anonymous and file-backed pages. RSS that rises with the free bytes while
blocks and in-use bytes stay level is fragmentation; RSS that rises in file-backed pages is code paged
in as it is first run; neither is a leak.

    LIVE_OBJECTS_DIR=/tmp/live PYTHONPATH=bench/live_objects .venv/bin/python -m bench.load --rate 6
"""

from __future__ import annotations

import ctypes
import gc
import itertools
import json
import os
import sys
import threading
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any

_CONTAINERS = (dict, list, set, frozenset, deque)


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _heap() -> dict[str, float] | None:
    """glibc's heap: in use (uordblks + mmapped blocks) and free inside its arenas, in MB."""
    try:
        mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    mb = 1024 * 1024
    return {
        "in_use_mb": round((info.uordblks + info.hblkhd) / mb, 2),
        "free_mb": round(info.fordblks / mb, 2),
        "arena_mb": round(info.arena / mb, 2),
    }


def _rss() -> dict[str, float]:
    """Resident memory split as the kernel counts it: anonymous (heaps, arenas, stacks) and file-backed
    (code and data of the interpreter and its libraries, paged in as paths are first run)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssFile"):
            fields[name] = round(int(value.split()[0]) / 1024, 2)
    return fields


def _largest(live: list[Any], own: object, count: int = 8) -> list[dict[str, Any]]:
    """The longest containers among `live`, leaving out this counter's own (`own`)."""
    sized = sorted(
        ((len(o), o) for o in live if type(o) in _CONTAINERS and o is not own), key=lambda pair: -pair[0]
    )
    largest = []
    for length, container in sized[:count]:
        sample = next(iter(container), None)
        largest.append({"type": type(container).__name__, "len": length, "sample": repr(sample)[:80]})
    return largest


def _count_forever(folder: Path, every: float) -> None:
    baseline: set[int] | None = None
    started = time.monotonic()
    path = folder / f"{os.getpid()}.jsonl"
    for sample in itertools.count(1):
        time.sleep(every)
        gc.collect()
        live = gc.get_objects()
        new = None
        if sample == 2:
            baseline = {id(o) for o in live}
        elif baseline is not None:
            new = Counter(type(o).__name__ for o in live if id(o) not in baseline)
        line = {
            "t_s": round(time.monotonic() - started, 1),
            "live": len(live),
            "by_type": dict(Counter(type(o).__name__ for o in live).most_common(12)),
            "new_since_second_sample": None if new is None else sum(new.values()),
            "new_by_type": None if new is None else dict(new.most_common(12)),
            "largest_containers": _largest(live, own=baseline),
            "allocated_blocks": sys.getallocatedblocks(),
            "heap": _heap(),
            "rss_mb": _rss(),
        }
        del live
        with path.open("a") as out:
            out.write(json.dumps(line) + "\n")


def _start() -> None:
    folder = os.environ.get("LIVE_OBJECTS_DIR")
    if not folder:
        return
    command = Path("/proc/self/cmdline").read_bytes().split(b"\0")
    if os.environ.get("LIVE_OBJECTS_SERVICE", "services.analytics").encode() not in command:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    every = float(os.environ.get("LIVE_OBJECTS_EVERY", "40"))
    threading.Thread(target=_count_forever, args=(Path(folder), every), daemon=True).start()


_start()
