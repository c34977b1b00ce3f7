"""Near-duplicate faces: the same photo re-posted, resized, re-encoded or lightly cropped.

Each aligned face gets a perceptual hash (imagehash's DCT pHash of ``hash_size``^2 bits).
Two faces whose hashes differ in at most ``max_distance`` bits are near-duplicates; chains
(a~b, b~c) join one group through union-find. In each group one face is kept by a fixed
rule (the largest source face, then the smallest id), the others point to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Generic, TypeVar

import numpy as np

K = TypeVar("K", int, str)


class UnionFind(Generic[K]):
    """Disjoint sets over ordered keys (ints or strings), with path halving; ``groups()`` is deterministic."""

    def __init__(self, keys: Iterable[K] = ()) -> None:
        self._parent: dict[K, K] = {}
        for key in keys:
            self.add(key)

    def add(self, key: K) -> None:
        self._parent.setdefault(key, key)

    def find(self, key: K) -> K:
        self.add(key)
        parent = self._parent
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    def union(self, a: K, b: K) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self._parent[max(ra, rb)] = min(ra, rb)

    def groups(self) -> list[list[K]]:
        """Every set as a sorted list, the sets ordered by their smallest key."""
        out: dict[K, list[K]] = {}
        for key in self._parent:
            out.setdefault(self.find(key), []).append(key)
        return sorted((sorted(g) for g in out.values()), key=lambda g: g[0])


def phash_hex(image: np.ndarray, hash_size: int) -> str:
    """Perceptual hash of an (H, W, 3) uint8 RGB image as a hex string of hash_size^2 bits."""
    import imagehash
    from PIL import Image

    return str(imagehash.phash(Image.fromarray(image), hash_size=hash_size))


def _bits(hashes: Sequence[str]) -> np.ndarray:
    """(N, B) bool bits of equal-length hex hashes."""
    if not hashes:
        return np.zeros((0, 0), dtype=bool)
    lengths = {len(h) for h in hashes}
    if len(lengths) != 1:
        raise ValueError(
            f"perceptual hashes of different lengths {sorted(lengths)}: computed with different hash sizes"
        )
    raw = np.frombuffer(bytes.fromhex("".join(hashes)), dtype=np.uint8).reshape(len(hashes), -1)
    return np.unpackbits(raw, axis=1).astype(bool)


def near_duplicate_pairs(hashes: Sequence[str], max_distance: int, block: int = 256) -> list[tuple[int, int]]:
    """Index pairs (i < j) whose hashes differ in at most ``max_distance`` bits.

    All pairs are compared (N^2 / 2 Hamming distances, vectorised in blocks of rows), so
    the result does not depend on any ordering or indexing heuristic.
    """
    bits = _bits(hashes)
    n = len(hashes)
    pairs: list[tuple[int, int]] = []
    packed = bits.astype(np.float32)  # BLAS matmul; exact for counts <= 2^24
    ones = packed.sum(1)
    for start in range(0, n, block):
        rows = packed[start : start + block]
        # Hamming distance = popcount(a) + popcount(b) - 2 * (a . b) on 0/1 vectors
        dist = ones[start : start + block, None] + ones[None, start:] - 2.0 * (rows @ packed[start:].T)
        ii, jj = np.nonzero(dist <= max_distance + 0.5)
        pairs.extend((i, j) for i, j in zip((ii + start).tolist(), (jj + start).tolist(), strict=False) if i < j)
    return pairs


def near_duplicate_groups(
    ids: Sequence[str], hashes: Sequence[str], sizes: Sequence[float], max_distance: int
) -> dict[str, str]:
    """Map each removed face id to the id it duplicates; kept faces are absent.

    ``sizes`` ranks the candidates of a group: the largest (source face area) is kept, ties
    go to the smallest id, so the result does not depend on the input order.
    """
    if not (len(ids) == len(hashes) == len(sizes)):
        raise ValueError(f"ids, hashes and sizes differ in length: {len(ids)}, {len(hashes)}, {len(sizes)}")
    uf: UnionFind[int] = UnionFind(range(len(ids)))
    for i, j in near_duplicate_pairs(hashes, max_distance):
        uf.union(i, j)
    removed: dict[str, str] = {}
    for group in uf.groups():
        if len(group) < 2:
            continue
        keep = min(group, key=lambda i: (-float(sizes[i]), ids[i]))
        for i in group:
            if i != keep:
                removed[ids[i]] = ids[keep]
    return removed
