"""facegen.align.dedupe: union-find, Hamming pairs, group choice, and real re-encoded / resized faces."""

from __future__ import annotations

import io

import numpy as np
import pytest

from facegen.align.dedupe import UnionFind, near_duplicate_groups, near_duplicate_pairs, phash_hex
from facegen.align.geometry import AlignConfig, align_face


def test_union_find_joins_chains_and_lists_groups_in_order() -> None:
    uf = UnionFind(["e", "d", "c", "b", "a"])
    uf.union("a", "b")
    uf.union("c", "b")
    uf.union("e", "e")
    assert uf.groups() == [["a", "b", "c"], ["d"], ["e"]]
    assert uf.find("c") == uf.find("a")
    uf.union("z", "d")  # unknown keys join on first use
    assert uf.groups() == [["a", "b", "c"], ["d", "z"], ["e"]]


def test_pairs_are_exact_hamming_thresholds() -> None:
    hashes = ["0000", "0001", "0003", "ffff", "0000"]  # 16-bit hashes
    assert near_duplicate_pairs(hashes, 0) == [(0, 4)]
    assert near_duplicate_pairs(hashes, 1) == [(0, 1), (0, 4), (1, 2), (1, 4)]
    assert near_duplicate_pairs(hashes, 2) == [(0, 1), (0, 2), (0, 4), (1, 2), (1, 4), (2, 4)]
    assert near_duplicate_pairs(hashes, 1, block=2) == near_duplicate_pairs(hashes, 1)
    assert near_duplicate_pairs([], 3) == []
    with pytest.raises(ValueError, match="different lengths"):
        near_duplicate_pairs(["00", "0000"], 1)


def test_groups_keep_the_largest_face_through_chains() -> None:
    # a~b (1 bit), b~c (1 bit), a and c 2 bits apart: one chain with max_distance 1
    ids = ["a", "b", "c", "d"]
    hashes = ["0000", "0001", "0003", "ff00"]
    removed = near_duplicate_groups(ids, hashes, [10.0, 30.0, 20.0, 99.0], max_distance=1)
    assert removed == {"a": "b", "c": "b"}
    # ties on size go to the smallest id; input order does not matter
    tie = near_duplicate_groups(["y", "x"], ["0000", "0000"], [5.0, 5.0], max_distance=0)
    assert tie == {"y": "x"}
    assert near_duplicate_groups(ids[::-1], hashes[::-1], [99.0, 20.0, 30.0, 10.0], 1) == removed


def test_resized_and_reencoded_photo_is_a_near_duplicate_and_other_people_are_not(faces_dir, scrfd_model) -> None:
    import wild_faces as w
    from PIL import Image

    cfg = AlignConfig()

    def face_hash(rgb: np.ndarray) -> str:
        det = w.detect_array(scrfd_model, rgb)[0]
        return phash_hex(align_face(rgb, np.asarray(det.kps), cfg).image, cfg.dedupe_hash_size)

    photo = w.read_image(faces_dir / "wild" / w.FRONTAL)
    buf = io.BytesIO()
    Image.fromarray(photo).resize((photo.shape[1] // 2, photo.shape[0] // 2)).save(buf, "JPEG", quality=70)
    reposted = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    hashes = [face_hash(photo), face_hash(reposted)]
    for name in (w.OBAMA, w.OBAMA_SMALL, w.BIDEN, w.WEBP, w.RGBA, w.EXIF_ROTATED):
        hashes.append(face_hash(w.read_image(faces_dir / "wild" / name)))
    pairs = near_duplicate_pairs(hashes, cfg.dedupe_max_distance)
    # the repost of the photo, and the two Obama files (one photo at two sizes), nothing else
    assert pairs == [(0, 1), (2, 3)]
