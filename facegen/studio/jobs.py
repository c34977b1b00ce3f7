"""One model job at a time: a worker thread, a bounded queue, cancellation.

Why: a CPU (or one GPU) runs one denoising job well and several badly; a web page can ask
for work faster than the model answers. Every request that touches the model becomes a
:class:`Job` run by the single worker thread in submission order. The queue holds at most
``queue_size`` waiting jobs (a full queue is refused at once, never buffered without bound),
and each job carries a cancel flag that the route sets when its last client disconnects (or
``POST /api/cancel`` sets); the job's code calls :meth:`Job.step` after every denoising step
(the sampler's ``on_step``), which records its progress for ``GET /api/progress`` and stops
there when cancelled. A request identical to one waiting or running joins it (``key``) instead
of queueing the same work again.
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
    key: str | None = None  # identical requests share one job (None: never shared)
    cancel_event: threading.Event = field(default_factory=threading.Event)
    future: Future = field(default_factory=Future)
    done: int = 0  # denoising steps run so far
    total: int = 0  # steps the job will run (0: not known yet)
    watchers: int = 0  # requests waiting for this job's answer
    by_user: bool = False  # cancelled through POST /api/cancel (not a disconnect)

    def cancel(self, *, by_user: bool = False) -> None:
        """Ask the job to stop at its next :meth:`check` (or never to start)."""
        self.by_user = self.by_user or by_user
        self.cancel_event.set()

    def step(self, done: int, total: int) -> None:
        """The sampler's ``on_step``: record progress, stop here when cancelled."""
        self.done, self.total = done, total
        self.check()

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
        self._keyed: dict[str, Job] = {}  # jobs by key, until they finish
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

    def submit(self, fn: Callable[[Job], Any], name: str = "job", key: str | None = None) -> Job:
        """Queue ``fn`` (called with its Job) or join the waiting or running job of the same ``key``.

        The returned job counts one more watcher (see :meth:`leave`). Raises :class:`QueueFull`
        when the queue is full."""
        job = Job(fn=fn, name=name, key=key, watchers=1)
        with self._lock:
            same = self._keyed.get(key) if key is not None else None
            if same is not None and not same.cancel_event.is_set() and not same.future.done():
                same.watchers += 1
                return same
            if self._waiting >= self.queue_size:
                raise QueueFull(
                    f"{self._waiting} model jobs are already waiting (queue_size={self.queue_size}); "
                    "retry when the current ones finish"
                )
            self._waiting += 1
            if key is not None:
                self._keyed[key] = job
        self._queue.put(job)
        return job

    def leave(self, job: Job) -> None:
        """One watcher of ``job`` went away; the job is cancelled when none is left."""
        with self._lock:
            job.watchers -= 1
            if job.watchers <= 0:
                job.cancel()

    def cancel_running(self) -> bool:
        """Cancel the running job for its users (``POST /api/cancel``); False when none runs."""
        with self._lock:
            job = self.running
        if job is None or job.future.done():
            return False
        job.cancel(by_user=True)
        return True

    def progress(self) -> dict[str, Any]:
        """``GET /api/progress``: the running job's name and steps, and how many jobs wait."""
        with self._lock:
            job, queued = self.running, self._waiting
        if job is None:
            return {"busy": False, "name": None, "step": 0, "total": 0, "queued": queued}
        return {"busy": True, "name": job.name, "step": job.done, "total": job.total, "queued": queued}

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
                result, error = job.fn(job), None
            except BaseException as exc:
                result, error = None, exc
            self._finish(job, result, error)

    def _finish(self, job: Job, result: Any, error: BaseException | None) -> None:
        """Count the job, free the worker and its key, then answer: a caller woken by the answer
        already sees the worker idle (``GET /api/progress`` not busy) and the key free."""
        if isinstance(error, Cancelled):
            self.cancelled += 1
        elif error is None:
            self.completed += 1
        with self._lock:
            self.running = None
            if job.key is not None and self._keyed.get(job.key) is job:
                del self._keyed[job.key]
        if error is None:
            job.future.set_result(result)
        else:
            job.future.set_exception(error)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker after the jobs already queued (the running one is cancelled)."""
        if self.running is not None:
            self.running.cancel()
        self._queue.put(None)
        self._thread.join(timeout)
