"""Free the trash in a child process, so that deleting never takes the training process's GIL.

Why a process and not a thread (issue 18 §1): a deleter *thread* at low priority shares the
training process's GIL. Each time it returns from a system call it asks for the GIL; CPython's
holder then drops it and **waits until the asker has taken it** (the forced switch), and a nice-19
thread on a busy machine waits for a CPU for a long time. So the training thread stalls for as
long as the starved deleter waits to be scheduled: a priority inversion. Measured on the 2-core
test VM beside two busy processes (`../shared/loaded`), freeing 4 GiB in paced 16 MiB steps while
a one-thread torch loop ran: with the deleter as a nice-19 thread of the loop's process, the loop's
thread was switched out voluntarily (waiting for the GIL) ~170 times per deletion and its median
step rose from 5.4 ms to 8.0 ms; with the same deleter in a child process, 6 and 42 switches and a
median step of 4.7 and 5.2 ms. On an idle machine the two did not differ measurably.

So :class:`~trainer_callbacks.checkpoint.deletion.Deleter` (with ``background=True``) sends each
batch to one long-lived child (``python -m trainer_callbacks.checkpoint.deleter_process``, started
at train begin, lightweight: it imports no torch or transformers), which runs the same paced,
chunked deletion (:mod:`.deletion`: a nice-19 thread while on time, a normal-priority one once
behind) and reports each batch back. The line protocol on its stdin/stdout is JSON, one object per
line:

* to the child: ``{"op": "free", "id", "step", "names", "paths", "measure", "dry_run", "report",
  "seconds_left"}`` (the time left until the pacing target, measured by the parent, which knows the
  run's speed), ``{"op": "hurry"}`` / ``{"op": "calm"}`` (someone waits: no more pauses / pauses
  again), ``{"op": "exit"}`` (finish what was sent, then exit; end of input does the same, so the
  child never outlives its work when the training process dies);
* from the child: ``{"ready": pid}``, ``{"id", "bytes_freed", "removed", "not_removed", "paused",
  "hand_offs"}`` per batch, ``{"log": level, "message"}`` for each warning it logs (the parent logs
  it on its own logger). Anything else it prints (a traceback) is kept and shown if it dies.

If the child cannot be started (no ``sys.executable``, an embedded interpreter) or dies, the
batches it had not reported are deleted by the in-process threads instead, with one warning: a
claimed folder is never left behind because of the child.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import logging
import os
import subprocess
import sys
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import IO, Any

from trainer_callbacks.checkpoint.deletion import Deleter, Removal

logger = logging.getLogger("trainer_callbacks.checkpoint.deletion")

MODULE = "trainer_callbacks.checkpoint.deleter_process"
RESULT = ("bytes_freed", "removed", "not_removed", "paused")
"""The :class:`~.deletion.Removal` fields a batch's report carries back (JSON keeps their types)."""


class ChildDied(Exception):
    """The child exited (or could not be written to) before reporting a batch."""


class ChildDeleter:
    """The training process's end of the child: starts it, sends it batches, completes their futures.

    A reader thread (normal priority, blocked on the pipe; it takes the GIL once per line) turns the
    child's reports into results. When the child is gone, every batch it had not reported fails with
    :class:`ChildDied` and :attr:`alive` is false for good.
    """

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self._proc = proc
        self._lock = threading.Lock()
        self._futures: dict[int, tuple[Future[Removal], Removal]] = {}
        self._next = 0
        self._alive = True
        self.pid = proc.pid
        self.hand_offs = 0
        self.ready = threading.Event()
        """Set when the child has started and reads its input."""
        self.warned = False
        """Whether its death has been reported (once per child)."""
        self.tail: collections.deque[str] = collections.deque(maxlen=20)
        """The last lines the child printed outside the protocol (a traceback, if it crashed)."""
        self._reader = threading.Thread(target=self._read, name="checkpoint-pruner-child-reader", daemon=True)
        self._reader.start()

    @classmethod
    def spawn(cls) -> ChildDeleter | None:
        """Start the child; ``None`` (with the reason at debug level) when it cannot be started here."""
        executable = sys.executable
        if not executable:
            logger.debug("CheckpointPruner: no sys.executable; deleting on threads of this process")
            return None
        env = dict(os.environ)
        # the child finds this package where this process found it (an editable install, a test's pythonpath)
        path = [p for p in sys.path if p and os.path.isdir(p)]
        env["PYTHONPATH"] = os.pathsep.join([*path, env["PYTHONPATH"]] if env.get("PYTHONPATH") else path)
        try:
            proc = subprocess.Popen(
                [executable, "-m", MODULE],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                encoding="utf-8",
                errors="replace",
                bufsize=1,
                close_fds=True,
                env=env,
            )
        except (OSError, ValueError) as exc:
            logger.debug("CheckpointPruner: could not start the deleting process (%s); using threads", exc)
            return None
        return cls(proc)

    @property
    def alive(self) -> bool:
        return self._alive

    def submit(self, removal: Removal, paths: list[Path], measure: bool, seconds_left: float | None) -> Future[Removal]:
        """Send one batch; its future gets ``removal`` filled in by the child's report (or :class:`ChildDied`)."""
        future: Future[Removal] = Future()
        with self._lock:
            if not self._alive:
                future.set_exception(ChildDied("the deleting process has exited"))
                return future
            self._next += 1
            ident = self._next
            self._futures[ident] = (future, removal)
        message = {
            "op": "free",
            "id": ident,
            "step": removal.step,
            "names": list(removal.names),
            "paths": [str(p) for p in paths],
            "measure": measure,
            "dry_run": removal.dry_run,
            "report": removal.report,
            "seconds_left": seconds_left,
        }
        if not self._send(message):
            self._fail_pending()
        return future

    def hurry(self, on: bool) -> None:
        """Tell the child to stop pausing (someone waits) or to pace again."""
        self._send({"op": "hurry" if on else "calm"})

    def close(self) -> None:
        """Let the child go: it finishes what it was sent, then exits; the reader thread reaps it.

        Not waited for: whoever needs the batches done waits for their futures first (``Deleter.close``
        does), and a child that has not finished starting (a run that never pruned) must not hold up
        the end of training. The child exits at the end of its input whatever happens here.
        """
        self._send({"op": "exit"})
        with contextlib.suppress(OSError, ValueError):
            if self._proc.stdin is not None:
                self._proc.stdin.close()

    def _send(self, message: dict[str, Any]) -> bool:
        stdin = self._proc.stdin
        if stdin is None:
            return False
        line = json.dumps(message) + "\n"
        with self._lock:
            if not self._alive:
                return False
            try:
                stdin.write(line)
                stdin.flush()
            except (OSError, ValueError):  # broken pipe: the child is gone (the reader sees its end too)
                return False
        return True

    def _read(self) -> None:
        stdout = self._proc.stdout
        assert stdout is not None
        for line in stdout:
            try:
                message = json.loads(line)
            except ValueError:
                message = None
            if not isinstance(message, dict):
                self.tail.append(line.rstrip("\n"))
                continue
            if "ready" in message:
                self.ready.set()
            elif "log" in message:
                logger.log(int(message["log"]), "%s", message.get("message", ""))
            elif "id" in message:
                self._report(message)
        self._proc.wait()
        self._fail_pending()

    def _report(self, message: dict[str, Any]) -> None:
        with self._lock:
            entry = self._futures.pop(int(message["id"]), None)
            self.hand_offs = int(message.get("hand_offs", self.hand_offs))
        if entry is None:
            return
        future, removal = entry
        for name in RESULT:
            setattr(removal, name, message[name])
        future.set_result(removal)

    def _fail_pending(self) -> None:
        with self._lock:
            self._alive = False
            pending = list(self._futures.values())
            self._futures.clear()
        code = self._proc.poll()
        reason = f"the deleting process exited (code {code})" if code is not None else "the deleting process is gone"
        for future, _ in pending:
            if not future.done():
                future.set_exception(ChildDied(reason))


# ---- the child's side -----------------------------------------------------------------------------


class _Forward(logging.Handler):
    """Sends the child's log records to the parent, which logs them on its own logger."""

    def __init__(self, send: Any) -> None:
        super().__init__(logging.INFO)
        self.send = send

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):  # the parent is gone
            self.send({"log": record.levelno, "message": record.getMessage()})


def serve(stdin: IO[str], stdout: IO[str], deleter: Deleter) -> None:
    """Run the protocol until ``exit`` or the end of ``stdin``, then finish every batch (the child's main loop)."""
    lock = threading.Lock()

    def send(message: dict[str, Any]) -> None:
        with lock:
            stdout.write(json.dumps(message) + "\n")
            stdout.flush()

    def done(ident: int, future: Future[Removal]) -> None:
        removal = future.result()
        send({"id": ident, "hand_offs": deleter.hand_offs, **{name: getattr(removal, name) for name in RESULT}})

    forward = _Forward(send)
    source = logging.getLogger("trainer_callbacks.checkpoint")
    saved = source.propagate, source.level
    source.addHandler(forward)
    source.propagate = False  # the parent logs them, once
    source.setLevel(logging.INFO)
    send({"ready": os.getpid()})
    try:
        for line in stdin:
            message = json.loads(line)
            op = message.get("op")
            if op == "free":
                removal = Removal(
                    step=int(message["step"]),
                    names=tuple(message["names"]),
                    dry_run=bool(message["dry_run"]),
                    report=bool(message["report"]),
                )
                left = message.get("seconds_left")
                deadline = None if left is None else deleter.clock() + float(left)
                paths = [Path(p) for p in message["paths"]]
                future = deleter.submit_paced(removal, paths, measure=bool(message["measure"]), deadline=deadline)
                future.add_done_callback(functools.partial(done, int(message["id"])))
            elif op in ("hurry", "calm"):
                deleter.hurry(op == "hurry")
            elif op == "exit":
                break
    finally:
        deleter.close()
        source.removeHandler(forward)
        source.propagate, source.level = saved[0], saved[1]


def main() -> None:
    serve(sys.stdin, sys.stdout, Deleter(background=True, process=False))


if __name__ == "__main__":
    main()
