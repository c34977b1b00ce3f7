"""Manual curation of the face set: a git-tracked ``curation.csv`` that the align stage applies.

The align stage's reasons are automatic; a person who sees a wrong face in the training set (a
drawing, a baby, a duplicate the hash missed) rejects it here, and one the checks rejected
wrongly is restored. The file has one row per face, sorted by ``face_id``::

    face_id,decision,note
    0123456789abcdef_00,reject,a drawing
    fedcba9876543210_01,restore,sharp enough

``reject`` gives the face the status ``manual`` (whatever the checks said); ``restore``
overrides an automatic per-face rejection (blurry, extreme_yaw, near_duplicate, ...): the face
is aligned, written and split like any accepted one. An image-level status (unreadable,
no_face, ...) or a face whose eye keypoints coincide has nothing to align and cannot be
restored. ``dvc.yaml`` lists the file as an input of align, so ``dvc repro`` reruns align and
what follows after a change; ``facegen curate`` and the studio's Dataset tab write it.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facegen.common.atomic import write_bytes_atomic

CURATION_FILE = Path("curation.csv")  # at the repository root, tracked by git
HEADER = ("face_id", "decision", "note")
DECISIONS = ("reject", "restore")
MANUAL = "manual"  # the status of a manually rejected face
FACE_ID = re.compile(r"^[0-9a-f]{16}_(none|\d{2})$")
MAX_NOTE = 500  # characters


@dataclass(frozen=True)
class Curation:
    """The decisions of curation.csv: face_id -> (decision, note)."""

    decisions: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def rejected(self) -> frozenset[str]:
        return frozenset(f for f, (d, _) in self.decisions.items() if d == "reject")

    @property
    def restored(self) -> frozenset[str]:
        return frozenset(f for f, (d, _) in self.decisions.items() if d == "restore")


def check_decision(face_id: str, decision: str, note: str = "") -> None:
    """Raise ValueError naming a bad face id, decision or note."""
    if not FACE_ID.match(face_id):
        raise ValueError(f"face_id {face_id!r} is not a face id (16 hex digits, '_', two digits or 'none')")
    if decision not in DECISIONS:
        raise ValueError(f"decision {decision!r} of face {face_id} must be one of {list(DECISIONS)}")
    if len(note) > MAX_NOTE or "\n" in note or "\r" in note:
        raise ValueError(f"note of face {face_id} must be one line of at most {MAX_NOTE} characters")


def read_curation(path: str | Path) -> Curation:
    """The decisions of ``path`` (no file: none). A bad header, row or repeated face is named."""
    path = Path(path)
    if not path.is_file():
        return Curation()
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))  # a spreadsheet's BOM is fine
    if not rows or tuple(rows[0]) != HEADER:
        raise ValueError(f"{path}: first line must be the header {','.join(HEADER)}")
    decisions: dict[str, tuple[str, str]] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) not in (2, 3):
            raise ValueError(f"{path} line {number}: expected face_id,decision,note, got {len(row)} fields")
        face, decision, note = row[0].strip(), row[1].strip(), (row[2] if len(row) == 3 else "")
        try:
            check_decision(face, decision, note)
        except ValueError as exc:
            raise ValueError(f"{path} line {number}: {exc}") from exc
        if face in decisions:
            raise ValueError(f"{path} line {number}: face {face} is listed twice (keep one row per face)")
        decisions[face] = (decision, note)
    return Curation(decisions)


def write_curation(path: str | Path, curation: Curation) -> None:
    """Write the decisions sorted by face id (one stable diff per decision), atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(HEADER)
    for face in sorted(curation.decisions):
        writer.writerow([face, *curation.decisions[face]])
    write_bytes_atomic(path, buf.getvalue().encode("utf-8"))


def restorable(row: Mapping[str, Any]) -> str | None:
    """Why a faces.parquet row cannot be restored (None: it can): nothing to align."""
    if int(row["face_index"]) < 0:
        return f"its image has no face to align (status {row['status']})"
    if not float(row["eye_distance"]) > 0:
        return "its eye keypoints coincide (nothing to align)"
    return None


def decide(
    path: str | Path, face_row: Mapping[str, Any] | None, face_id: str, decision: str, *, note: str = ""
) -> Curation:
    """Record ``decision`` for ``face_id`` (replacing its earlier one) after checking it against the
    face's row of faces.parquet (None: not in the table); returns the new decisions."""
    check_decision(face_id, decision, note)
    if face_row is None:
        raise ValueError(f"face {face_id} is not in the aligned faces table (run the align stage, or check the id)")
    if decision == "restore" and (why := restorable(face_row)) is not None:
        raise ValueError(f"face {face_id} cannot be restored: {why}")
    current = read_curation(path)
    write_curation(path, Curation({**current.decisions, face_id: (decision, note)}))
    return read_curation(path)


def counts(table: Any, curation: Curation) -> dict[str, int]:
    """metrics/align.json ``manual``: decisions, faces rejected by hand, restored faces now accepted,
    and decisions that matched no face (or a face that could not be restored)."""
    status = dict(zip(table["face_id"], table["status"], strict=False))
    rejected = sum(status.get(f) == MANUAL for f in curation.rejected)
    restored = sum(status.get(f) == "ok" for f in curation.restored)
    return {
        "decisions": len(curation.decisions),
        "rejected": int(rejected),
        "restored": int(restored),
        "unused": len(curation.decisions) - int(rejected) - int(restored),
    }
