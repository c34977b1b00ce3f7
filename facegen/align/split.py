"""Leak-free train/test split: by post, with near-duplicates never across the split.

Posts are joined into groups when they share a source image (the same file in two posts)
or hold faces of one near-duplicate group. Whole groups go to one side: the groups are
shuffled with ``seed`` (numpy's PCG64) and moved to test, in that order, until test holds
at least ``test_fraction`` of the faces; the rest is train. With a positive fraction and
at least two groups, test gets at least one group and train keeps at least one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from facegen.align.dedupe import UnionFind


def post_groups(posts: Iterable[str], links: Iterable[Sequence[str]]) -> list[list[str]]:
    """Posts joined through ``links`` (each a set of posts that must share a side), sorted."""
    uf = UnionFind(sorted(set(posts)))
    for linked in links:
        linked = sorted(set(linked))
        for other in linked[1:]:
            uf.union(linked[0], other)
    return uf.groups()


def assign_split(
    face_posts: Mapping[str, str], links: Iterable[Sequence[str]], test_fraction: float, seed: int
) -> dict[str, str]:
    """Map each face id (of the faces entering the dataset) to ``train`` or ``test``.

    ``face_posts`` maps face id -> post id; ``links`` are sets of posts that must stay
    together (posts sharing an image, posts of one near-duplicate group).
    """
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"align.test_fraction={test_fraction} must be in [0, 1)")
    groups = post_groups(face_posts.values(), links)
    group_of = {post: g for g, members in enumerate(groups) for post in members}
    counts = np.zeros(len(groups), dtype=np.int64)
    for post in face_posts.values():
        counts[group_of[post]] += 1
    test_groups: set[int] = set()
    target = test_fraction * len(face_posts)
    filled = np.flatnonzero(counts)  # groups joined only through face-less posts hold no face
    if test_fraction > 0 and len(filled) >= 2:
        n_test = 0
        for g in filled[np.random.default_rng(seed).permutation(len(filled))].tolist():
            if n_test >= target or len(test_groups) == len(filled) - 1:
                break
            test_groups.add(g)
            n_test += int(counts[g])
    return {face: "test" if group_of[post] in test_groups else "train" for face, post in sorted(face_posts.items())}
