"""Counts a service's live Python objects during a load run, to tell a leak from garbage not yet collected.

Put this folder on PYTHONPATH and name a folder in LIVE_OBJECTS_DIR; every service process started then
whose command line names LIVE_OBJECTS_SERVICE (default `services.analytics`) writes, every
LIVE_OBJECTS_EVERY seconds (default 40), one line of JSON to `<dir>/<pid>.jsonl`: the objects the
collector tracks after a full collection, by type, and how many are new since the second sample. A leak
shows as a count that keeps rising; garbage awaiting a rare full collection (analytics raises the
collector's threshold) shows as RSS rising while this count stays flat. Python runs `sitecustomize` at
start-up, so nothing in the services knows about it. Objects frozen at start-up (`gc.freeze()`) are not
counted: they live as long as the process anyway.

    LIVE_OBJECTS_DIR=/tmp/live PYTHONPATH=bench/live_objects .venv/bin/python -m bench.load --rate 6
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import threading
import time
from collections import Counter
from pathlib import Path


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
