"""facegen.studio.jobs: one job at a time, in order, a bounded queue, cancellation."""

from __future__ import annotations

import threading

import pytest

from facegen.studio.jobs import Cancelled, JobRunner, QueueFull


def test_jobs_run_one_at_a_time_in_order_and_errors_reach_the_caller():
    runner = JobRunner(queue_size=8)
    active, peak, order = [0], [0], []
    lock = threading.Lock()

    def work(k):
        def fn(job):
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            order.append(k)
            with lock:
                active[0] -= 1
            return k * k
        return fn

    jobs = [runner.submit(work(k)) for k in range(5)]
    assert [j.future.result(5) for j in jobs] == [0, 1, 4, 9, 16]
    assert order == [0, 1, 2, 3, 4] and peak[0] == 1

    def boom(job):
        raise ValueError("steps=0 is refused")

    with pytest.raises(ValueError, match="steps=0"):
        runner.submit(boom).future.result(5)
    runner.close()


def test_a_full_queue_is_refused_and_a_cancelled_job_stops_at_its_check():
    runner = JobRunner(queue_size=1)
    started, release = threading.Event(), threading.Event()

    def blocker(job):
        started.set()
        while not release.is_set():
            job.check()
            release.wait(0.01)
        return "done"

    first = runner.submit(blocker, "first")
    started.wait(5)
    waiting = runner.submit(lambda job: "second", "second")
    with pytest.raises(QueueFull, match=r"1 model jobs are already waiting \(queue_size=1\)"):
        runner.submit(lambda job: "third")
    first.cancel()
    with pytest.raises(Cancelled, match="first cancelled"):
        first.future.result(5)
    assert waiting.future.result(5) == "second"
    # a job cancelled before it starts never runs
    release.clear()
    started.clear()
    blocking = runner.submit(blocker)
    started.wait(5)
    ran = []
    never = runner.submit(lambda job: ran.append(1))
    never.cancel()
    release.set()
    assert blocking.future.result(5) == "done"
    with pytest.raises(Cancelled):
        never.future.result(5)
    assert ran == [] and runner.cancelled == 2
    runner.close()


def test_queue_size_must_be_positive():
    with pytest.raises(ValueError, match="queue_size=0 must be >= 1"):
        JobRunner(queue_size=0)
