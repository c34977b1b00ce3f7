"""GET /api/progress, POST /api/cancel, the cost limit and identical requests sharing one job."""

from __future__ import annotations

import threading
import time

from studio_client import page_client

from facegen.studio.app import StudioConfig


def _in_thread(fn):
    out = {}
    thread = threading.Thread(target=lambda: out.setdefault("r", fn()), daemon=True)
    thread.start()
    return thread, out


def _wait_for_steps(client, n: int) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        p = client.get("/api/progress").json()
        if p["busy"] and p["step"] >= n:
            return p
        time.sleep(0.01)
    raise AssertionError("the job never reached its steps")


def test_a_cancelled_250_step_job_stops_at_the_next_step(client):
    runner = client.app.state.studio.runner
    assert client.get("/api/progress").json() == {"busy": False, "name": None, "step": 0, "total": 0, "queued": 0}
    body = {"n": 1, "steps": 250, "sampler": "ddim"}
    thread, out = _in_thread(lambda: client.post("/api/generate", json=body))
    p = _wait_for_steps(client, 3)
    assert (p["name"], p["total"]) == ("generate", 250)  # one batch of the sample stage's batch_size, 250 steps
    job = runner.running
    start = time.monotonic()
    assert client.post("/api/cancel").json() == {"cancelled": True}
    at_cancel = job.done
    thread.join(10)
    freed = time.monotonic() - start
    r = out["r"]
    assert r.status_code == 409 and r.json() == {"detail": "cancelled"}
    assert job.done <= at_cancel + 1 < 250  # at most the step that was running when cancel came
    assert runner.running is None and freed < 5
    assert client.post("/api/cancel").json() == {"cancelled": False}  # nothing runs now
    assert client.post("/api/generate", json={"n": 1}).status_code == 200  # the worker is free


def test_the_cost_limit_names_images_times_steps(repo):
    with page_client(StudioConfig(root=repo, max_cost=100)) as c:
        r = c.post("/api/generate", json={"n": 26, "steps": 4})
        assert r.status_code == 413 and "26 images x 4 steps = 104 exceeds this studio's max_cost=100" in r.text
        assert c.post("/api/generate", json={"n": 25, "steps": 4}).status_code == 200
        r = c.post("/api/interpolate", json={"frames": 30, "steps": 4})
        assert r.status_code == 413 and "max_cost=100" in r.text


def test_identical_requests_share_one_job(client):
    runner = client.app.state.studio.runner
    body = {"n": 1, "steps": 200, "sampler": "ddim", "seed": 7}
    first, out1 = _in_thread(lambda: client.post("/api/generate", json=body))
    _wait_for_steps(client, 2)
    second, out2 = _in_thread(lambda: client.post("/api/generate", json=body))
    first.join(30)
    second.join(30)
    assert out1["r"].status_code == out2["r"].status_code == 200
    assert out1["r"].json()["images"] == out2["r"].json()["images"]
    assert runner.completed == 1 and client.get("/api/progress").json()["queued"] == 0


def test_params_yaml_studio_limits(repo):
    from facegen import cli
    from facegen.studio.app import params_limits

    assert params_limits({"studio": {"max_cost": 5}}) == {"max_cost": 5}
    for section, message in [({"max_cots": 1}, "studio.max_cots is not a studio key"), ({"max_cost": 1.5}, "integer")]:
        try:
            params_limits({"studio": section})
        except ValueError as exc:
            assert message in str(exc)
        else:
            raise AssertionError(section)
    (repo / "params.yaml").write_text((repo / "params.yaml").read_text() + "studio:\n  max_cost: nope\n")
    assert cli.main(["studio", "--root", str(repo), "--model", str(repo / "models/best")]) == 2
