"""A fix for kafka-python 3's event loop: a task queued from another thread must wake the loop.

kafka-python 3 runs all network work on one IO thread (``kafka.net.selector.NetworkSelector``).
``call_soon_threadsafe`` queues a task *and* wakes the loop out of ``select()``; plain
``call_soon`` only queues it. kafka-python itself calls ``call_soon`` from other threads
(``KafkaTCPTransport.write`` when a request is sent from the consumer's own thread, a
future's callback that resumes a task when the future is resolved there), so such a task
waits for whatever wakes the loop next: a socket event or a timer. When neither comes,
it waits forever.

Seen in the two-replica test under the full suite's load. One replica never got its
partitions: its main thread waited in ``NetworkSelector.run`` for a task that never ran,
and its IO thread sat idle in ``select()``. A minimal reproduction is
``tests/test_kafka.py::test_a_task_queued_from_another_thread_runs_at_once``.

:func:`install` replaces ``NetworkSelector.call_soon`` with one that also wakes the loop
when the caller is not the loop's own thread (a wake-up is one byte on a socket pair), and
``_add_ready_task`` with one that marks the task ready *before* queueing it (the IO thread
may take it at once; marking it after could overwrite the state the IO thread gave it).
Written by hand: no kafka-python release fixes it (3.0.12 is the newest). The replaced
methods are checked first; when they are not as expected, nothing is patched and a
warning says why.
"""

from __future__ import annotations

import inspect
import logging
import threading

__all__ = ["install", "compatible"]

log = logging.getLogger("fairwatch.streaming.kafka")

_installed = False


def compatible() -> str | None:
    """``None`` when kafka-python's event loop is the one this fix was written for, else why not."""
    try:
        from kafka.net.selector import NetworkSelector, Task, TaskState
    except ImportError as exc:
        return f"no kafka.net.selector ({exc}): kafka-python before 3.0 has no IO thread"
    for name in ("call_soon", "_add_ready_task", "wakeup", "call_soon_threadsafe"):
        if not callable(getattr(NetworkSelector, name, None)):
            return f"NetworkSelector has no {name}()"
    if not hasattr(TaskState, "READY") or not isinstance(Task, type):
        return "kafka.net.selector has no Task / TaskState.READY"
    try:
        source = inspect.getsource(NetworkSelector.call_soon)
    except (OSError, TypeError) as exc:
        return f"cannot read NetworkSelector.call_soon ({exc})"
    if "_add_ready_task" not in source or "_pending_tasks" not in source:
        return "NetworkSelector.call_soon no longer queues with _add_ready_task and _pending_tasks"
    return None


def install() -> bool:
    """Patch kafka-python's event loop (idempotent); ``False`` (with a warning) when it cannot."""
    global _installed
    if _installed:
        return True
    why = compatible()
    if why is not None:
        log.warning("kafka-python event loop left as it is: %s", why, extra={"reason": why})
        return False
    from kafka.net.selector import NetworkSelector, Task, TaskState

    def _add_ready_task(self, task):
        task.state = TaskState.READY  # before it is queued: the IO thread may take it at once
        self._ready.append(task)

    def call_soon(self, task):
        if not isinstance(task, Task):
            task = Task(task)
        self._pending_tasks.add(task)
        self._add_ready_task(task)
        me = threading.current_thread()
        if me is not getattr(self, "_io_thread", None) and me is not getattr(self, "_poll_owner", None):
            self.wakeup()  # the loop may be in select(): without this the task waits for the next event
        return task

    NetworkSelector._add_ready_task = _add_ready_task
    NetworkSelector.call_soon = call_soon
    _installed = True
    return True
