"""The download stage's persistent cache: fetched bytes and per-URL / per-image records.

Lives outside DVC's outs (default ``cache/download/``, git-ignored) so it survives
``dvc repro``, which deletes outs before running a stage. Layout:

- ``blobs/<sha[:2]>/<sha256>``: every fetched body, content-addressed, written to a temp file
  and renamed into place (a crash never leaves a half blob under a real name);
- ``cache.sqlite``: table ``fetches`` (one row per URL: outcome, HTTP status, sha256 of the
  body) and table ``analyses`` (one row per image and analysis key: decode outcome, size,
  detections, face sharpness). A fetch row is committed only after its blob is on disk, so a
  row always points to a complete blob.

Used from one thread (the download loop's main thread); workers only return results.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import astuple, dataclass, fields
from pathlib import Path

from facegen.common.atomic import write_bytes_atomic
from facegen.common.images import sha256_file, sha256_hex
from facegen.download.fetch import FETCHED, FetchResult


@dataclass(frozen=True)
class FetchRecord:
    """The stored outcome of fetching one URL (the body lives in the blob store by sha256)."""

    url: str
    status: str
    http_status: int | None
    content_type: str | None
    final_url: str | None
    sha256: str | None
    size: int | None
    error: str | None


@dataclass(frozen=True)
class Analysis:
    """Decode + detection result for one image under one analysis key.

    ``status`` is ``decoded``, the decode rejection (``not_an_image``, ``too_large``,
    ``corrupt``) or the detector's refusal (``bad_shape``, ``detector_error``: size kept);
    ``detections`` is JSON text of ``Detection.to_record()`` dicts, largest first, or None when
    the detector did not run (an image below ``download.min_side``); ``sharpness`` is the largest
    face's region sharpness (None without a face).
    """

    sha256: str
    key: str
    status: str
    error: str | None
    format: str | None
    ext: str | None
    width: int | None
    height: int | None
    n_frames: int | None
    detections: str | None
    sharpness: float | None


_FETCH_COLS = [f.name for f in fields(FetchRecord)]
_ANALYSIS_COLS = [f.name for f in fields(Analysis)]
_SCHEMA = """
CREATE TABLE IF NOT EXISTS fetches (
    url TEXT PRIMARY KEY, status TEXT NOT NULL, http_status INTEGER, content_type TEXT,
    final_url TEXT, sha256 TEXT, size INTEGER, error TEXT
);
CREATE TABLE IF NOT EXISTS analyses (
    sha256 TEXT NOT NULL, key TEXT NOT NULL, status TEXT NOT NULL, error TEXT, format TEXT, ext TEXT,
    width INTEGER, height INTEGER, n_frames INTEGER, detections TEXT, sharpness REAL,
    PRIMARY KEY (sha256, key)
);
"""


def _chunks(items: list[str], n: int = 500) -> Iterable[list[str]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


class FetchCache:
    """Blob store + SQLite records under ``root``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.blob_dir = self.root / "blobs"
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.root / "cache.sqlite")
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> FetchCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # blobs
    def blob_path(self, sha256: str) -> Path:
        return self.blob_dir / sha256[:2] / sha256

    def read_blob(self, sha256: str) -> bytes:
        return self.blob_path(sha256).read_bytes()

    def _write_blob(self, data: bytes) -> str:
        sha = sha256_hex(data)
        path = self.blob_path(sha)
        if path.is_file() and path.stat().st_size == len(data) and sha256_file(path) == sha:
            return sha  # already there, intact (a damaged blob is rewritten)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, data)
        return sha

    # fetch records
    def put_fetch(self, result: FetchResult) -> FetchRecord:
        """Persist one fetch outcome (blob first, then its row) and return the record."""
        sha = size = None
        if result.status == FETCHED:
            assert result.body is not None, "a fetched result carries its body"
            sha, size = self._write_blob(result.body), len(result.body)
        rec = FetchRecord(
            result.url,
            result.status,
            result.http_status,
            result.content_type,
            result.final_url,
            sha,
            size,
            result.error,
        )
        with self.db:
            self.db.execute(f"INSERT OR REPLACE INTO fetches VALUES ({','.join('?' * len(_FETCH_COLS))})", astuple(rec))
        return rec

    def fetches(self, urls: Iterable[str]) -> dict[str, FetchRecord]:
        """Stored records for those of ``urls`` that have one."""
        out: dict[str, FetchRecord] = {}
        for batch in _chunks(list(dict.fromkeys(urls))):
            q = f"SELECT {','.join(_FETCH_COLS)} FROM fetches WHERE url IN ({','.join('?' * len(batch))})"
            for row in self.db.execute(q, batch):
                out[row[0]] = FetchRecord(*row)
        return out

    # analyses
    def put_analysis(self, rec: Analysis) -> None:
        with self.db:
            self.db.execute(
                f"INSERT OR REPLACE INTO analyses VALUES ({','.join('?' * len(_ANALYSIS_COLS))})", astuple(rec)
            )

    def analyses(self, shas: Iterable[str], key: str) -> dict[str, Analysis]:
        """Stored analyses under ``key`` for those of ``shas`` that have one."""
        out: dict[str, Analysis] = {}
        for batch in _chunks(list(dict.fromkeys(shas))):
            marks = ",".join("?" * len(batch))
            q = f"SELECT {','.join(_ANALYSIS_COLS)} FROM analyses WHERE key = ? AND sha256 IN ({marks})"
            for row in self.db.execute(q, [key, *batch]):
                out[row[0]] = Analysis(*row)
        return out
