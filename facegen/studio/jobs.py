"""One model job at a time: a worker thread, a bounded queue, cancellation.

Why: a CPU (or one GPU) runs one denoising job well and several badly; a web page can ask
for work faster than the model answers. Every request that touches the model becomes a
:class:`Job` run by the single worker thread in submission order. The queue holds at most
``queue_size`` waiting jobs (a full queue is refused at once, never buffered without bound),
and each job carries a cancel flag that the route sets when its client disconnects; the
job's code checks :meth:`Job.check` between batches or denoising steps and stops there.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any


class Cancelled(Exception):
    """The job's client went away (or it was cancelled before it started)."""


class QueueFull(Exception):
    """More jobs are waiting than ``queue_size`` allows."""


@dataclass
class Job:
    """A unit of model work: ``fn(job)`` runs on the worker thread; ``future`` gets its result."""

    fn: Callable[[Job], Any]
    name: str = "job"
    cancel_event: threading.Event = field(default_factory=threading.Event)
    future: Future = field(default_factory=Future)

    def cancel(self) -> None:
        """Ask the job to stop at its next :meth:`check` (or never to start)."""
        self.cancel_event.set()

    def check(self) -> None:
        """Raise :class:`Cancelled` when the job was cancelled: call between units of work."""
        if self.cancel_event.is_set():
            raise Cancelled(f"{self.name} cancelled")


class JobRunner:
    """The single worker thread that runs model jobs one at a time, in order."""

    def __init__(self, queue_size: int = 4) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size={queue_size} must be >= 1")
        self.queue_size = queue_size
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._waiting = 0
        self.running: Job | None = None
        self.completed = 0
        self.cancelled = 0
        self._thread = threading.Thread(target=self._work, name="facegen-studio-model", daemon=True)
        self._thread.start()

    @property
    def waiting(self) -> int:
        """Jobs submitted and not yet started."""
        with self._lock:
            return self._waiting

    def submit(self, fn: Callable[[Job], Any], name: str = "job") -> Job:
        """Queue ``fn`` (called with its Job); raises :class:`QueueFull` when the queue is full."""
        job = Job(fn=fn, name=name)
        with self._lock:
            if self._waiting >= self.queue_size:
                raise QueueFull(f"{self._waiting} model jobs are already waiting (queue_size={self.queue_size}); "
                                "retry when the current ones finish")
            self._waiting += 1
        self._queue.put(job)
        return job

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            with self._lock:
                self._waiting -= 1
                self.running = job
            try:
                job.check()
                result = job.fn(job)
            except Cancelled as exc:
                self.cancelled += 1
                job.future.set_exception(exc)
            except BaseException as exc:
                job.future.set_exception(exc)
            else:
                self.completed += 1
                job.future.set_result(result)
            finally:
                with self._lock:
                    self.running = None

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker after the jobs already queued (the running one is cancelled)."""
        if self.running is not None:
            self.running.cancel()
        self._queue.put(None)
        self._thread.join(timeout)
