"""facegen.studio.app through FastAPI's TestClient: sizes, the sample stage's bytes, bad input, the CLI."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time

import numpy as np
import pytest
from PIL import Image
from studio_client import page_client

from facegen import cli
from facegen.diffusion import sampling
from facegen.diffusion.model import save_model_dir
from facegen.diffusion.noise import make_noise_scheduler
from facegen.sample.stage import SampleConfig, sample_to_dir
from facegen.studio.app import StudioConfig, create_app


def decode(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))


def png_bytes(image: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_generate_returns_the_sample_stages_images_byte_for_byte(client, repo):
    r = client.post("/api/generate", json={"seed": 3, "n": 6, "steps": 4, "sampler": "dpm++"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["seeds"] == [3, 4, 5, 6, 7, 8] and body["batch_size"] == 4 and body["size"] == 16
    images = [base64.b64decode(b) for b in body["images"]]
    assert [Image.open(io.BytesIO(b)).size for b in images] == [(16, 16)] * 6
    cfg = SampleConfig(seed=3, num_images=6, sampler="dpm++", steps=4, batch_size=4, device="cpu", grid_images=1)
    sample_to_dir(cfg, repo / "models" / "best", repo / "samples")
    for i, data in enumerate(images):
        assert data == (repo / "samples" / f"{i + 1:05d}.png").read_bytes(), f"image {i} differs from the sample stage"
    # the same seed later in another request is the same image
    again = client.post("/api/generate", json={"seed": 5, "n": 1, "steps": 4, "sampler": "dpm++"}).json()
    assert base64.b64decode(again["images"][0]) == images[2]


def test_bf16_sampling_is_the_sample_stages_too(repo):
    """sample.precision: bf16 reaches the studio's generation and stays byte-identical to the stage's."""
    params = repo / "params.yaml"
    params.write_text(params.read_text().replace("  grid_images: 4", "  grid_images: 4\n  precision: bf16"))
    with page_client(StudioConfig(root=repo)) as c:
        body = c.post("/api/generate", json={"seed": 0, "n": 2}).json()
    assert body["precision"] == "bf16"
    cfg = SampleConfig(
        num_images=2, sampler="ddim", steps=4, batch_size=4, device="cpu", grid_images=1, precision="bf16"
    )
    sample_to_dir(cfg, repo / "models" / "best", repo / "samples")
    for i, data in enumerate(body["images"]):
        assert base64.b64decode(data) == (repo / "samples" / f"{i + 1:05d}.png").read_bytes()


def test_model_endpoint_reports_defaults_limits_and_no_conditions(client):
    m = client.get("/api/model").json()
    assert (m["id"], m["size"], m["conditions"]) == ("best", 16, [])
    assert m["defaults"] == {"sampler": "ddim", "steps": 4, "batch_size": 4, "seed": 0}
    assert m["limits"]["max_images"] == 64 and m["samplers"] == ["ddpm", "ddim", "dpm++"]
    assert client.get("/").status_code == 200 and "facegen studio" in client.get("/").text
    assert client.get("/static/app.js").status_code == 200
    schema = client.get("/openapi.json").json()
    assert {"/api/generate", "/api/interpolate", "/api/edit", "/api/judge"} <= set(schema["paths"])


def test_interpolation_ends_are_the_two_seeds_images(client, tiny_unet):
    r = client.post("/api/interpolate", json={"seed_a": 7, "seed_b": 11, "frames": 4, "steps": 4, "sampler": "ddim"})
    assert r.status_code == 200, r.text
    frames = [decode(b) for b in r.json()["images"]]
    assert r.json()["t"] == [0.0, 0.333333, 0.666667, 1.0] and frames[0].shape == (16, 16, 3)
    cfg = dict(make_noise_scheduler().config)
    ref = sampling.generate(
        tiny_unet, cfg, sampling.SampleSpec(sampler="ddim", steps=4, batch_size=4), [7, 7, 7, 11], progress=False
    )
    np.testing.assert_array_equal(frames[0], ref[0])
    np.testing.assert_array_equal(frames[3], ref[3])
    assert not np.array_equal(frames[1], frames[0]) and not np.array_equal(frames[1], frames[3])


def test_variations_are_near_the_seed_and_differ(client):
    r = client.post("/api/variations", json={"seed": 2, "n": 3, "amount": 0.3})
    images = [decode(b).astype(np.float64) for b in r.json()["images"]]
    assert len(images) == 3 and images[0].shape == (16, 16, 3)
    assert not np.array_equal(images[0], images[1])
    # near: each variation is closer to seed 2's own face (frame 0 of a slerp from seed 2) than other seeds' faces
    own = decode(client.post("/api/interpolate", json={"seed_a": 2, "seed_b": 9, "frames": 2}).json()["images"][0])
    others = client.post("/api/interpolate", json={"seed_a": 40, "seed_b": 41, "frames": 2}).json()["images"]
    far = min(np.abs(decode(b).astype(np.float64) - own).mean() for b in others)
    near = max(np.abs(im - own).mean() for im in images)
    assert near < 0.6 * far, (near, far)


def test_sdedit_and_repaint_keep_size_and_repaint_keeps_unmasked_pixels(client):
    face = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    r = client.post("/api/edit", json={"image": png_bytes(face), "mode": "sdedit", "strength": 0.5, "seed": 1})
    assert r.status_code == 200, r.text
    out = decode(r.json()["image"])
    again = decode(
        client.post("/api/edit", json={"image": png_bytes(face), "mode": "sdedit", "strength": 0.5, "seed": 1}).json()[
            "image"
        ]
    )
    assert out.shape == (16, 16, 3) and np.array_equal(out, again) and not np.array_equal(out, face)
    mask = np.zeros((16, 16, 3), np.uint8)
    mask[4:12, 4:12] = 255
    r = client.post(
        "/api/edit",
        json={"image": png_bytes(face), "mode": "repaint", "mask": png_bytes(mask), "sampler": "dpm++", "resample": 2},
    )
    assert r.status_code == 200, r.text
    assert r.json()["sampler"] == "ddim"  # RePaint jumps back: not with a multistep solver
    out = decode(r.json()["image"])
    keep = mask[:, :, 0] == 0
    np.testing.assert_array_equal(out[keep], face[keep])
    assert not np.array_equal(out[~keep], face[~keep])


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/api/generate", {"n": 100000}, 413, "n=100000 exceeds this studio's max_images=64"),
        ("/api/interpolate", {"frames": 65}, 413, "frames=65 exceeds"),
        ("/api/generate", {"n": 2, "steps": 5000}, 422, "steps=5000 exceeds this studio's max_steps=250"),
        ("/api/generate", {"n": "many"}, 422, "n: Input should be a valid integer"),
        ("/api/generate", {"n": 0}, 422, "n: Input should be greater than or equal to 1"),
        ("/api/generate", {"sampler": "euler"}, 422, "sampler: Input should be 'ddpm', 'ddim' or 'dpm++'"),
        ("/api/generate", {"condition": {"yaw": 10}}, 422, "model best is unconditional"),
        ("/api/model", {"id": "run:0123abcd"}, 404, "run '0123abcd': no MLflow store configured"),
        ("/api/model", {"id": "checkpoint-7"}, 404, "use 'best', 'run:<run_id>' or 'run:<run_id>:epoch:<N>'"),
        ("/api/edit", {"image": "%%%"}, 422, "image is not valid base64"),
        ("/api/edit", {"image": base64.b64encode(b"<html>no</html>").decode()}, 422, "image: markup"),
        ("/api/edit", {"image": png_bytes(np.zeros((16, 16, 3), np.uint8)), "mode": "repaint"}, 422, "needs a 'mask'"),
        ("/api/judge", {"token": "nope", "answer": "real"}, 404, "judge token 'nope' is unknown"),
        ("/api/judge", {"token": "nope", "answer": "maybe"}, 422, "answer: Input should be 'real' or 'fake'"),
    ],
)
def test_bad_requests_get_a_clear_4xx_and_the_server_keeps_serving(client, path, body, status, message):
    r = client.post(path, json=body)
    assert r.status_code == status, r.text
    assert message in r.json()["detail"]
    assert client.post("/api/generate", json={"n": 1}).status_code == 200


def test_malformed_json_is_a_400(client):
    r = client.post("/api/generate", content=b'{"seed": 1,', headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["detail"].startswith("malformed JSON body")


def test_uploads_that_are_not_images_or_too_large_are_refused(repo):
    with page_client(StudioConfig(root=repo, max_upload_bytes=2000)) as c:
        r = c.post("/api/upload", files={"file": ("x.jpg", b"GIF89a not really", "image/jpeg")})
        assert r.status_code == 422 and "upload: " in r.json()["detail"]
        r = c.post("/api/upload", files={"file": ("x.png", b"\x89PNG" + bytes(5000), "image/png")})
        assert r.status_code == 413 and "max_upload_bytes=2000" in r.json()["detail"]
        big = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        r = c.post("/api/edit", json={"image": png_bytes(big)})
        assert r.status_code == 413 and "exceeds max_bytes=2000" in r.json()["detail"]


def test_upload_detects_and_aligns_like_the_pipeline(repo, faces_dir, scrfd_model):
    from facegen.align.geometry import AlignConfig, align_face
    from facegen.common.images import decode_image
    from facegen.faces.detect import FaceDetector, FacesConfig
    from facegen.studio.editing import resize_face

    photo = faces_dir / "wild" / "deepface__img12.jpg"  # 560x415, one face
    data = photo.read_bytes()
    with page_client(StudioConfig(root=repo, detector=str(scrfd_model))) as c:
        r = c.post("/api/upload", files={"file": (photo.name, data, "image/jpeg")})
        assert r.status_code == 200, r.text
        body = r.json()
        blank = png_bytes(np.full((200, 200, 3), 128, np.uint8))
        none = c.post("/api/upload", files={"file": ("blank.png", base64.b64decode(blank), "image/png")})
        assert none.status_code == 422 and "no face found in the 200x200 PNG upload" in none.json()["detail"]
    rgb = decode_image(data, max_pixels=50_000_000).rgb
    det = FaceDetector(FacesConfig(model=str(scrfd_model)))
    kps = np.asarray(det.detect(np.ascontiguousarray(rgb[:, :, ::-1]))[0].kps)
    expected = resize_face(align_face(rgb, kps, AlignConfig(size=32)).image, 16)
    assert body["aligned_size"] == 32 and body["size"] == 16
    np.testing.assert_array_equal(decode(body["image"]), expected)


@pytest.mark.parametrize("width, height", [(1, 641), (100, 50000), (64, 16000)])
def test_uploads_of_degenerate_shapes_answer_4xx(repo, scrfd_model, width, height):
    """A photo the detector cannot take (issue 22: thin or tall PNGs) is a 4xx naming why, never a 5xx."""
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (128, 100, 90)).save(buf, format="PNG")
    with page_client(StudioConfig(root=repo, detector=str(scrfd_model))) as c:
        r = c.post("/api/upload", files={"file": ("thin.png", buf.getvalue(), "image/png")})
        assert 400 <= r.status_code < 500, r.text
        assert f"{width}x{height}" in r.json()["detail"]
        assert c.post("/api/generate", json={"n": 1}).status_code == 200


def test_conditional_model_shows_its_conditions_and_samples_them(repo):
    import torch

    from facegen.diffusion import conditional
    from facegen.diffusion.model import unet_config
    from facegen.diffusion.sampling import SampleSpec, generate

    stats = {"names": ["brightness"], "mean": [120.0], "std": [30.0], "min": [40.0], "max": [200.0], "margin": 0.0}
    torch.manual_seed(0)
    unet = conditional.build(unet_config("tiny", 16, (8, 16)), stats).eval()
    with torch.no_grad():  # a trained-looking embedding: the fresh one is zero and would ignore the condition
        unet.condition_embedding[2].weight.normal_(0, 0.5)
    sched = make_noise_scheduler()
    save_model_dir(repo / "cond", unet, sched, {"model": "tiny", "condition": ["brightness"]})
    with page_client(StudioConfig(root=repo, model=repo / "cond")) as c:
        assert c.get("/api/model").json()["conditions"] == [
            {"name": "brightness", "min": 40.0, "max": 200.0, "default": 120.0}
        ]
        r = c.post("/api/generate", json={"n": 1, "condition": {"hair": 1}})
        assert r.status_code == 422 and "['hair'] are not among the model's ['brightness']" in r.json()["detail"]
        r = c.post("/api/generate", json={"n": 1, "condition": {"brightness": 900}})
        assert r.status_code == 422 and "brightness" in r.json()["detail"]
        r = c.post(
            "/api/generate",
            json={"n": 2, "seed": 3, "steps": 4, "sampler": "ddim", "condition": {"brightness": 150}, "guidance": 2},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["condition"] == {"brightness": 150} and body["guidance"] == 2
        cfg = c.app.state.studio.sample
        expected = generate(
            unet,
            dict(sched.config),
            SampleSpec(
                sampler="ddim",
                steps=4,
                timestep_spacing=cfg.timestep_spacing,
                batch_size=cfg.batch_size,
                guidance=2.0,
                device="cpu",
            ),
            [3, 4],
            conditions={"brightness": 150},
            progress=False,
        )
        np.testing.assert_array_equal(np.stack([decode(b) for b in body["images"]]), expected)
        plain = generate(
            unet,
            dict(sched.config),
            SampleSpec(
                sampler="ddim", steps=4, timestep_spacing=cfg.timestep_spacing, batch_size=cfg.batch_size, device="cpu"
            ),
            [3, 4],
            progress=False,
        )
        assert not np.array_equal(expected, plain)  # the condition reached the model
        assert c.post("/api/generate", json={"n": 1}).status_code == 200


def test_a_disconnected_client_cancels_its_job(repo):
    """Drive the ASGI app by hand: the body arrives, then the client goes away."""
    app = create_app(StudioConfig(root=repo, max_steps=1000, max_cost=64_000))
    runner = app.state.studio.runner
    body = json.dumps({"n": 64, "steps": 1000, "sampler": "ddim"}).encode()
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/generate",
        "raw_path": b"/api/generate",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"host", b"127.0.0.1:80"), (b"x-facegen-studio", b"1")],
        "http_version": "1.1",
        "scheme": "http",
        "server": ("test", 80),
        "client": ("test", 1),
        "root_path": "",
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent = []

    async def receive():
        if messages:
            return messages.pop(0)
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    while runner.running is not None:  # the job stops at its next check
        time.sleep(0.05)
    assert sent[0]["status"] == 499 and runner.cancelled == 1 and runner.completed == 0
    runner.close()


def test_cli_studio_parser_and_a_missing_model(tmp_path, capsys):
    args = cli.build_parser().parse_args(["studio", "--port", "9999", "--model", str(tmp_path / "none")])
    assert (args.host, args.port, args.command) == ("127.0.0.1", 9999, "studio")
    assert cli.main(["studio", "--model", str(tmp_path / "none"), "--root", str(tmp_path)]) == 2
    assert "no trained model at" in capsys.readouterr().err
