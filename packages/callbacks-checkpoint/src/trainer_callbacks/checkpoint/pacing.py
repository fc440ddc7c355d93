"""How fast the deleter frees the trash: a pure rule, no file system access, no clock.

Freeing a large file is kernel work (the file system releases its blocks, journals it, drops
its page cache) that competes with the training loop whatever the deleter thread's CPU
priority. So the deleter frees large files a chunk at a time (``os.truncate`` down by
:data:`CHUNK` bytes per call, then ``unlink``), and waits between chunks. :func:`pause` says
how long. When the pauses stop because the drain is behind (overdue, disk short), the rest is
handed from the nice-19 deleter thread to a normal-priority one (see :mod:`.deletion`), which
frees it as fast as the disk allows.

The deleter aims to be done :data:`TARGET_FRACTION` of the way to the next expected save (the
``target``; see :func:`target`), leaving the rest as slack for the work itself and a slow disk.
The rule, for ``pending`` bytes still to free, ``seconds_left`` until the target, and ``free``
bytes of free disk space:

* **short on disk** (``free < SHORT_FACTOR * pending``, i.e. free space is less than twice
  the trash still on disk): no pause. The next save writes about one checkpoint, which is at
  most the trash being freed; with less than twice that free, the save could run out of
  space, and pruning exists to give space back in time.
* **no expectation** (``seconds_left is None``: no save interval observed yet) or **overdue**
  (``seconds_left <= 0``): no pause.
* otherwise the chunks still to free share the time left evenly: pause
  ``seconds_left / chunks_left``, at most :data:`MAX_PAUSE`. The deleter asks again after
  every chunk with the time then left, so time spent truncating (or a slow disk) shortens
  the later pauses: the pauses add up to at most the time to the target, and the trash is
  gone before the next save unless the work itself takes longer than the slack.
"""

from __future__ import annotations

import math

MiB = 1 << 20
CHUNK = 64 * MiB
"""Bytes freed per ``os.truncate`` call (RocksDB's ``bytes_max_delete_chunk`` is of this order)."""
TARGET_FRACTION = 0.5
"""The deleter aims to be done this share of the way to the next expected save."""
MAX_PAUSE = 0.5
"""Longest pause between two chunks (seconds): with a long save interval, space still comes back soon."""
SHORT_FACTOR = 2.0
"""Free space below ``SHORT_FACTOR`` times the pending trash counts as short: delete without pauses."""


def chunks_left(pending: int, chunk: int = CHUNK) -> int:
    """Chunks still to free for ``pending`` bytes (at least 1 while anything is pending)."""
    return max(1, math.ceil(max(pending, 0) / chunk))


def short_on_disk(pending: int, free: int | None) -> bool:
    """Free space is less than :data:`SHORT_FACTOR` times the trash still on disk (``None``: unknown, not short)."""
    return free is not None and free < SHORT_FACTOR * max(pending, 0)


def pause(pending: int, seconds_left: float | None, free: int | None, chunk: int = CHUNK) -> float:
    """Seconds to wait after freeing a chunk, with ``pending`` bytes still to free (see the module docstring)."""
    if pending <= 0 or seconds_left is None or not math.isfinite(seconds_left) or seconds_left <= 0:
        return 0.0
    if short_on_disk(pending, free):
        return 0.0
    return min(MAX_PAUSE, seconds_left / chunks_left(pending, chunk))


def target(now: float, interval: float | None) -> float | None:
    """Clock time by which the trash should be gone, for a next save expected ``interval`` seconds after ``now``."""
    return None if interval is None else now + TARGET_FRACTION * interval


def expected_interval(
    now: float, last_time: float | None, last_step: int | None, step: int, save_steps: int | None
) -> float | None:
    """Seconds until the save after the one at ``step`` (at time ``now``), or ``None`` if nothing tells.

    The speed is what was observed since the last reference point (the previous save, or the start
    of training: ``last_time``/``last_step``); the distance to the next save is ``save_steps`` when the
    Trainer saves every ``save_steps`` steps, else the distance between the last two saves.
    """
    if last_time is None or last_step is None or step <= last_step or now <= last_time:
        return None
    per_step = (now - last_time) / (step - last_step)
    steps = save_steps if save_steps is not None and save_steps > 0 else step - last_step
    return per_step * steps
