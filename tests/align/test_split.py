"""facegen.align.split: whole post groups on one side, the seed decides, the fraction is met."""

from __future__ import annotations

import pytest

from facegen.align.split import assign_split, post_groups


def faces_of(posts: dict[str, int]) -> dict[str, str]:
    """face id -> post id, ``n`` faces per post."""
    return {f"{post}_{i}": post for post, n in posts.items() for i in range(n)}


def test_post_groups_follow_links_transitively() -> None:
    groups = post_groups(["p1", "p2", "p3", "p4"], [["p1", "p3"], ["p3", "p5"], ["p5", "p4"]])
    assert groups == [["p1", "p3", "p4", "p5"], ["p2"]]


def test_no_post_and_no_linked_group_on_both_sides() -> None:
    face_posts = faces_of({f"p{i:02d}": 1 + i % 3 for i in range(40)})
    links = [["p01", "p02"], ["p02", "p30"], ["p10", "p11"]]
    split = assign_split(face_posts, links, test_fraction=0.25, seed=3)
    side: dict[str, set[str]] = {}
    for face, post in face_posts.items():
        side.setdefault(post, set()).add(split[face])
    assert all(len(s) == 1 for s in side.values())
    assert side["p01"] == side["p02"] == side["p30"] and side["p10"] == side["p11"]
    n_test = sum(v == "test" for v in split.values())
    # groups are added until test reaches 25%: overshoot by less than one group (at most 5 faces here)
    assert 0.25 * len(face_posts) <= n_test < 0.25 * len(face_posts) + 5


def test_same_seed_same_split_other_seed_other_split() -> None:
    face_posts = faces_of({f"p{i:02d}": 2 for i in range(30)})
    a = assign_split(face_posts, [], 0.2, seed=0)
    assert a == assign_split(dict(reversed(list(face_posts.items()))), [], 0.2, seed=0)
    assert a != assign_split(face_posts, [], 0.2, seed=1)
    assert sum(v == "test" for v in a.values()) == 12


def test_edge_cases_keep_both_sides_usable() -> None:
    assert assign_split({}, [], 0.1, 0) == {}
    one_group = faces_of({"p1": 3, "p2": 2})
    assert set(assign_split(one_group, [["p1", "p2"]], 0.5, 0).values()) == {"train"}
    # a big fraction still leaves one group in train
    assert set(assign_split(faces_of({"a": 1, "b": 1, "c": 1}), [], 0.99, 0).values()) == {"train", "test"}
    assert set(assign_split(faces_of({"a": 1, "b": 1}), [], 0.0, 0).values()) == {"train"}
    # links through posts without faces still join the posts around them
    split = assign_split(faces_of({"a": 1, "b": 1, "c": 1, "d": 1}), [["a", "x"], ["x", "b"]], 0.5, 7)
    assert split["a_0"] == split["b_0"]
    with pytest.raises(ValueError, match=r"test_fraction=1.5"):
        assign_split(one_group, [], 1.5, 0)
