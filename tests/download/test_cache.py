"""facegen.download.cache: blobs by content hash, fetch and analysis records that survive reopening."""

from __future__ import annotations

from facegen.common.images import sha256_hex
from facegen.download.cache import Analysis, FetchCache
from facegen.download.fetch import FetchResult


def test_records_and_blobs_survive_reopening(tmp_path):
    body = b"\xff\xd8 some jpeg bytes"
    with FetchCache(tmp_path) as cache:
        rec = cache.put_fetch(FetchResult("http://h/a.jpg", "fetched", 200, "image/jpeg", "http://h/a.jpg", body))
        cache.put_fetch(FetchResult("http://h/b.jpg", "http_404", 404, "text/html", "http://h/b.jpg", error="HTTP 404"))
        cache.put_fetch(FetchResult("http://h/c.jpg", "fetched", 200, None, "http://h/c.jpg", body))  # same bytes
        cache.put_analysis(Analysis(rec.sha256, "k1", "decoded", None, "JPEG", "jpg", 10, 20, 1, "[]", None))
    assert rec.sha256 == sha256_hex(body) and rec.size == len(body)
    with FetchCache(tmp_path) as cache:
        got = cache.fetches(["http://h/a.jpg", "http://h/b.jpg", "http://h/c.jpg", "http://h/never.jpg"])
        assert set(got) == {"http://h/a.jpg", "http://h/b.jpg", "http://h/c.jpg"}
        assert got["http://h/b.jpg"].status == "http_404" and got["http://h/b.jpg"].sha256 is None
        assert got["http://h/c.jpg"].sha256 == rec.sha256
        assert cache.read_blob(rec.sha256) == body
        assert cache.blob_path(rec.sha256) == tmp_path / "blobs" / rec.sha256[:2] / rec.sha256
        assert next(iter(cache.analyses([rec.sha256], "k1").values())).width == 10
        assert cache.analyses([rec.sha256], "k2") == {}  # other detector/settings: not analysed
    blobs = [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]
    assert blobs == [tmp_path / "blobs" / rec.sha256[:2] / rec.sha256]  # stored once, no temp files left


def test_a_later_outcome_replaces_the_earlier(tmp_path):
    with FetchCache(tmp_path) as cache:
        cache.put_fetch(FetchResult("http://h/a.jpg", "timeout", error="ReadTimeout"))
        cache.put_fetch(FetchResult("http://h/a.jpg", "fetched", 200, "image/png", "http://h/a.jpg", b"png"))
        assert cache.fetches(["http://h/a.jpg"])["http://h/a.jpg"].status == "fetched"


def test_many_urls_are_queried_in_batches(tmp_path):
    urls = [f"http://h/{i}.jpg" for i in range(1234)]
    with FetchCache(tmp_path) as cache:
        for u in urls:
            cache.put_fetch(FetchResult(u, "http_404", 404))
        assert len(cache.fetches(urls)) == 1234


def test_a_damaged_blob_is_rewritten_by_the_next_fetch_of_its_bytes(tmp_path):
    body = b"\xff\xd8 some jpeg bytes"
    with FetchCache(tmp_path) as cache:
        rec = cache.put_fetch(FetchResult("http://h/a.jpg", "fetched", 200, "image/jpeg", "http://h/a.jpg", body))
        cache.blob_path(rec.sha256).write_bytes(b"\x00" * len(body))  # same size, other bytes
        cache.put_fetch(FetchResult("http://h/b.jpg", "fetched", 200, "image/jpeg", "http://h/b.jpg", body))
        assert cache.read_blob(rec.sha256) == body
