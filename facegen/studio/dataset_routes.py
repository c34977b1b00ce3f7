"""The studio's Dataset tab: the aligned faces (accepted and rejected, with reasons) and curation.

A module-level router over the app's :class:`FaceTable` (``app.state.dataset``, reached by
``Depends(get_table)``). ``GET /api/dataset`` pages through data/faces.parquet,
``GET /api/dataset/{face_id}/image`` shows one face (accepted: the stored PNG; rejected:
re-aligned from its photo, as the align preview does) and ``POST /api/dataset/{face_id}``
records a reject/restore decision in curation.csv (facegen.align.curation), which the align
stage applies on the next ``dvc repro``. The table is what align last wrote; a decision it
does not reflect yet is listed as not ``applied``.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from facegen.align.curation import CURATION_FILE, FACE_ID, MANUAL, MAX_NOTE, decide, read_curation

COLUMNS = ["face_id", "path", "sha256", "post_id", "face_index", "status", "split", "eye_distance", "kps"]
COLUMNS += ["duplicate_of"]
THUMB = 256  # px: the longest side of a shown source photo (a rejected image without a face)


class DecisionRequest(BaseModel):
    decision: Literal["reject", "restore"]
    note: str = Field("", max_length=MAX_NOTE, description="why (one line, kept in curation.csv)")


class FaceTable:
    """faces.parquet, reread when the align stage rewrites it; the curation file beside it."""

    def __init__(self, root: Path, faces: Path, curation: Path) -> None:
        self.root, self.faces, self.curation = root, faces, curation
        self.lock = threading.Lock()
        self.write_lock = threading.Lock()  # one curation.csv rewrite at a time
        self._table: pd.DataFrame | None = None
        self._stamp: float | None = None
        self._sources: dict[str, str] | None = None

    @classmethod
    def at(cls, root: Path, faces: Path = Path("data/faces.parquet"), curation: Path = CURATION_FILE) -> FaceTable:
        """``root``'s faces table and curation file (each relative to ``root`` unless absolute)."""
        root = Path(root)
        faces, curation = (p if p.is_absolute() else root / p for p in (Path(faces), Path(curation)))
        return cls(root, faces, curation)

    def table(self) -> pd.DataFrame:
        if not self.faces.is_file():
            raise HTTPException(404, f"{self.faces} not found: run the align stage first (dvc repro align)")
        stamp = self.faces.stat().st_mtime
        with self.lock:
            if self._table is None or stamp != self._stamp:
                self._table = pd.read_parquet(self.faces, columns=COLUMNS).set_index("face_id", drop=False)
                self._stamp, self._sources = stamp, None
            return self._table

    def row(self, face_id: str) -> pd.Series:
        table = self.table()
        if not FACE_ID.match(face_id) or face_id not in table.index:
            raise HTTPException(404, f"face {face_id!r} is not in {self.faces}")
        return table.loc[face_id]

    def sources(self) -> dict[str, str]:
        """sha256 -> the photo's absolute path, from downloads.parquet (for re-aligning rejected faces)."""
        from facegen.align.stage import tasks_from_downloads

        if self._sources is None:
            downloads = self.root / "data" / "downloads.parquet"
            frame = pd.read_parquet(downloads) if downloads.is_file() else None
            tasks = tasks_from_downloads(frame, self.root)[0] if frame is not None else []
            self._sources = {t.sha256: t.source for t in tasks}
        return self._sources


def _entry(row: pd.Series, decisions: dict[str, tuple[str, str]]) -> dict[str, Any]:
    decision, note = decisions.get(row["face_id"], (None, ""))
    applied = (decision == "reject" and row["status"] == MANUAL) or (decision == "restore" and row["status"] == "ok")
    return {
        "face_id": row["face_id"],
        "status": row["status"],
        "reason": None if row["status"] == "ok" else row["status"],
        "split": row["split"] if isinstance(row["split"], str) else None,
        "post_id": row["post_id"],
        "duplicate_of": row["duplicate_of"] if isinstance(row["duplicate_of"], str) else None,
        "decision": decision,
        "note": note,
        "applied": bool(applied) if decision else None,
    }


def _png(rgb: Any) -> bytes:
    from PIL import Image

    image = Image.fromarray(rgb)
    image.thumbnail((THUMB, THUMB))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _align_config(root: Path) -> Any:
    from facegen.align.geometry import AlignConfig
    from facegen.common.config import from_dict, load_params

    params = load_params(root / "params.yaml") if (root / "params.yaml").is_file() else {}
    return from_dict(AlignConfig, params["align"], "align") if "align" in params else AlignConfig()


router = APIRouter(prefix="/api/dataset", tags=["dataset"])


def get_table(request: Request) -> FaceTable:
    """The app's :class:`FaceTable` (``app.state.dataset``, set by ``create_app``; a FastAPI dependency)."""
    table: FaceTable = request.app.state.dataset
    return table


TableDep = Annotated[FaceTable, Depends(get_table)]


@router.get("")
def list_faces(
    *,
    data: TableDep,
    status: Literal["accepted", "rejected", "all"] = "all",
    reason: str | None = Query(None, description="only this status (blurry, manual, ...)"),
    offset: int = Query(0, ge=0),
    limit: int = Query(48, ge=1, le=500),
) -> dict[str, Any]:
    """Aligned faces, accepted and/or rejected (one page), with their curation decisions."""
    table = data.table()
    ok = table["status"] == "ok"
    picked = table[ok] if status == "accepted" else table[~ok] if status == "rejected" else table
    if reason:
        picked = picked[picked["status"] == reason]
    decisions = dict(read_curation(data.curation).decisions)
    return {
        "total": len(picked),
        "offset": offset,
        "limit": limit,
        "counts": {"all": len(table), "accepted": int(ok.sum()), "rejected": int((~ok).sum())},
        "reasons": {str(k): int(v) for k, v in sorted(table["status"].value_counts().items())},
        "curation": str(data.curation),
        "faces": [_entry(row, decisions) for _, row in picked.iloc[offset : offset + limit].iterrows()],
    }


@router.get("/{face_id}/image")
def face_image(face_id: str, data: TableDep) -> Response:
    """The face as the dataset has it (accepted) or re-aligned from its photo (rejected), PNG."""
    from facegen.align.stage import face_tile
    from facegen.common.images import read_image

    row, root = data.row(face_id), data.root
    if row["status"] == "ok":
        return Response(_png(read_image(root / row["path"])), media_type="image/png")
    sources = data.sources()
    if row["sha256"] not in sources:
        raise HTTPException(404, f"the photo of face {face_id} is not in data/downloads.parquet")
    return Response(_png(face_tile(row, sources, root, _align_config(root))), media_type="image/png")


@router.post("/{face_id}")
def curate(face_id: str, req: DecisionRequest, data: TableDep) -> dict[str, Any]:
    """Reject or restore a face in curation.csv; ``dvc repro`` applies it (align and after)."""
    row = data.row(face_id)
    with data.write_lock:
        try:
            decisions = decide(data.curation, row.to_dict(), face_id, req.decision, note=req.note).decisions
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
    return {
        "face": _entry(row, dict(decisions)),
        "curation": str(data.curation),
        "message": f"{req.decision} {face_id} recorded in {data.curation.name}; run `dvc repro` to apply it",
    }
