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


def _gate(calls: list[str], started: threading.Event, release: threading.Event, value: str):
    """A job function that records its call, then blocks until ``release`` (a real slow section)."""

    def fn(job):
        calls.append(value)
        started.set()
        while not release.wait(0.01):
            job.check()
        return value

    return fn


def test_an_identical_request_joins_the_running_job_and_a_different_one_waits_its_turn():
    runner = JobRunner(queue_size=1)
    calls: list[str] = []
    started, release = threading.Event(), threading.Event()
    other_started = threading.Event()
    first = runner.submit(_gate(calls, started, release, "a"), "generate", key="a")
    assert started.wait(5) and runner.running is first
    # arrives while the first blocks: same key -> the same Job, one more watcher, nothing queued
    again = runner.submit(_gate(calls, threading.Event(), release, "a-again"), "generate", key="a")
    assert again is first and first.watchers == 2 and runner.waiting == 0
    # a different request queues behind it and does not start while the first runs
    other = runner.submit(_gate(calls, other_started, release, "b"), "generate", key="b")
    assert other is not first and runner.waiting == 1
    # the queue (size 1) is full: a third different request is refused (429 in the studio) ...
    with pytest.raises(QueueFull):
        runner.submit(lambda job: "c", "generate", key="c")
    # ... but an identical one still joins the waiting job instead of being refused
    assert runner.submit(lambda job: "b-again", "generate", key="b") is other and other.watchers == 2
    assert not other_started.wait(0.2) and calls == ["a"]
    release.set()
    assert first.future.result(5) == again.future.result(5) == "a"
    assert other.future.result(5) == "b"
    assert calls == ["a", "b"] and runner.completed == 2 and runner.waiting == 0
    # once a job has finished, the same key is new work again
    assert runner.submit(lambda job: "a2", key="a") is not first
    runner.close()


def test_a_joined_job_runs_until_its_last_watcher_leaves_and_a_cancelled_one_is_not_joined():
    runner = JobRunner(queue_size=2)
    calls: list[str] = []
    started, release = threading.Event(), threading.Event()
    job = runner.submit(_gate(calls, started, release, "a"), key="a")
    assert started.wait(5)
    assert runner.submit(lambda j: "unused", key="a") is job
    runner.leave(job)  # one of two clients disconnects: the other still waits for the answer
    assert not job.cancel_event.wait(0.1) and runner.running is job
    runner.leave(job)  # the last one goes: the job stops at its next check
    with pytest.raises(Cancelled, match="job cancelled"):
        job.future.result(5)
    assert runner.cancelled == 1 and calls == ["a"]
    # a cancelled job is never joined: an identical request after it is queued as new work
    release.clear()
    started.clear()
    blocker = runner.submit(_gate(calls, started, release, "x"), key="x")
    assert started.wait(5)
    waiting = runner.submit(lambda j: "w", key="w")
    waiting.cancel()
    fresh = runner.submit(lambda j: "w2", key="w")
    assert fresh is not waiting and runner.waiting == 2
    release.set()
    assert blocker.future.result(5) == "x" and fresh.future.result(5) == "w2"
    with pytest.raises(Cancelled):
        waiting.future.result(5)
    runner.close()


def test_the_studio_answers_429_when_the_model_queue_is_full(client):
    runner = client.app.state.studio.runner
    calls: list[str] = []
    started, release = threading.Event(), threading.Event()
    try:
        runner.submit(_gate(calls, started, release, "busy"), "busy")
        assert started.wait(5)
        for k in range(runner.queue_size):
            runner.submit(lambda job: None, f"waiting-{k}")
        r = client.post("/api/generate", json={"n": 1})
        assert r.status_code == 429
        assert f"model jobs are already waiting (queue_size={runner.queue_size})" in r.json()["detail"]
    finally:
        release.set()
    assert client.post("/api/generate", json={"n": 1}).status_code == 200  # the queue drained
    assert calls == ["busy"]


@pytest.mark.parametrize("outcome", ["result", "cancelled"])
def test_a_caller_woken_by_the_answer_already_sees_the_worker_idle(outcome):
    """The answer is set last: progress, cancel and an identical request never see a finished job."""
    runner = JobRunner(queue_size=2)
    release = threading.Event()

    def fn(job):
        release.wait(5)  # until the callback below is attached
        if outcome == "cancelled":
            job.cancel()
            job.check()
        return "ok"

    job = runner.submit(fn, "generate", key="k")
    seen = []
    # a done-callback runs on the worker thread at the moment the future is answered
    job.future.add_done_callback(lambda f: seen.append((runner.running, runner.progress()["busy"])))
    release.set()
    if outcome == "cancelled":
        with pytest.raises(Cancelled):
            job.future.result(5)
    else:
        assert job.future.result(5) == "ok"
    assert seen == [(None, False)]
    assert runner.submit(lambda j: "again", key="k") is not job
    runner.close()
