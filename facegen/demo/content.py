"""What the local board server (``facegen.demo.board``) serves: a deterministic board model,
its PTT markup (index pages, articles, over-18 gate) and its images.

The board is a chronological list of index entries ("slots"): live posts, deleted
entries, announcements and, with ``extras``, posts whose article answers 404. Live posts
carry image links (body and pushes) to images the server hosts; with ``extras`` some
posts also link a dead image (404), a page that is not an image, one image under a second
URL, an Instagram page and an imgur album, so that every download status is exercised.
"""

from __future__ import annotations

import functools
import html
import io
import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from facegen.crawl.ptt import ENTRIES_PER_PAGE, IMAGE_EXTS, TAIPEI

CATEGORIES = (("正妹", 8), ("神人", 1), ("帥哥", 1))
BODY_LINES = {"正妹": "今天在路上看到的正妹", "神人": "求神人 這位是誰", "帥哥": "分享一位帥哥"}


@dataclass(frozen=True)
class BoardSpec:
    """How to build a board. ``posts`` counts index entries (deleted entries and
    announcements included); posts are spread ``posts_per_day`` a day from ``start_date``
    (Asia/Taipei). ``images_dir`` (searched recursively) provides the images, at most
    ``max_images`` of them, in a seeded order; without it ``max_images`` (default 48)
    faces are drawn."""

    board: str = "Beauty"
    images_dir: str | None = None
    max_images: int | None = None
    posts: int = 60
    images_per_post: int = 3
    start_date: str = "2024-01-01"
    posts_per_day: int = 10
    seed: int = 0
    extras: bool = True

    def __post_init__(self) -> None:
        for name in ("posts", "posts_per_day"):
            if getattr(self, name) < 1:
                raise ValueError(f"BoardSpec.{name}={getattr(self, name)} must be >= 1")
        if self.images_per_post < 0:
            raise ValueError(f"BoardSpec.images_per_post={self.images_per_post} must be >= 0")
        date.fromisoformat(self.start_date)


@dataclass(frozen=True)
class Slot:
    """One index entry. ``kind``: post, deleted, announcement or missing (article 404).
    ``first_image`` is the offset of the post's first image in the board's image cycle."""

    index: int
    post_id: str
    ts: int
    kind: str
    title: str
    author: str
    score: int
    first_image: int = 0
    push_image: bool = False
    live: int = -1

    @property
    def category(self) -> str:
        return self.title[1:3] if self.title.startswith("[") else ""


@dataclass(frozen=True)
class ImageAsset:
    """A served image: its URL name ``0007.jpg`` and its source file (None: drawn)."""

    name: str
    path: Path | None
    index: int


@dataclass(frozen=True)
class Link:
    """A link in an article as the board wrote it: ``href`` (path or absolute URL),
    ``source`` body/push, and whether the crawler should take it as an image link."""

    href: str
    source: str
    image_like: bool
    preview: str | None = None


@dataclass
class Board:
    spec: BoardSpec
    images: list[ImageAsset]
    slots: list[Slot]
    pinned: list[Slot]

    def __post_init__(self) -> None:
        self.by_id = {s.post_id: s for s in self.slots + self.pinned}
        self._by_name = {a.name: a for a in self.images}

    @property
    def pages(self) -> int:
        return max(1, -(-len(self.slots) // ENTRIES_PER_PAGE))

    @property
    def dates(self) -> tuple[str, str]:
        """First and last Taipei date of the chronological entries."""
        day = lambda s: datetime.fromtimestamp(s.ts, TAIPEI).date().isoformat()  # noqa: E731
        return day(self.slots[0]), day(self.slots[-1])

    def live_posts(self) -> list[Slot]:
        return [s for s in self.slots if s.kind == "post"]

    def links(self, slot: Slot) -> list[Link]:
        """The links of a live post's article, in page order (body then pushes)."""
        n, k, ipp = len(self.images), slot.live, self.spec.images_per_post
        name = lambda i: self.images[i % n].name  # noqa: E731
        out = [Link(f"/img/{name(slot.first_image + j)}", "body", True, name(slot.first_image + j)) for j in range(ipp)]
        if self.spec.extras:
            extra = {
                1: Link(f"/img/gone-{k:05d}.jpg", "body", True),
                2: Link(f"/img/page-{k:05d}.jpg", "body", True),
                3: Link(f"/mirror/{name(slot.first_image - 1)}", "body", True) if slot.first_image else None,
                4: Link(f"https://www.instagram.com/p/B{k:05d}/", "body", False),
                5: Link(f"https://imgur.com/a/Ab{k:05d}", "body", False),
            }.get(k % 10)
            if extra is not None:
                out.append(extra)
            if k % 10 == 4 and ipp:
                out.append(Link(out[0].href, "push", True))
        if slot.push_image:
            out.append(Link(f"/img/{name(slot.first_image + ipp)}", "push", True))
        return out

    def image_bytes(self, name: str) -> bytes | None:
        asset = self._by_name.get(name)
        return None if asset is None else _image_bytes(asset, self.spec.seed)


def _day_start(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=TAIPEI).timestamp())


def _load_images(spec: BoardSpec, rng: random.Random) -> list[ImageAsset]:
    if spec.images_dir is None:
        count = spec.max_images or 48
        return [ImageAsset(f"{i:04d}.jpg", None, i) for i in range(count)]
    root = Path(spec.images_dir)
    if not root.is_dir():
        raise ValueError(f"BoardSpec.images_dir={spec.images_dir!r} is not a directory")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise ValueError(f"BoardSpec.images_dir={spec.images_dir!r} holds no images ({', '.join(IMAGE_EXTS)})")
    rng.shuffle(files)
    files = files[: spec.max_images] if spec.max_images else files
    return [ImageAsset(f"{i:04d}{p.suffix.lower()}", p, i) for i, p in enumerate(files)]


def _kind(i: int, extras: bool) -> str:
    if extras and i % 17 == 5:
        return "deleted"
    if extras and i % 53 == 11:
        return "announcement"
    if extras and i % 41 == 23:
        return "missing"
    return "post"


def _score(i: int, rng: random.Random) -> int:
    if i % 29 == 3:
        return rng.randint(100, 130)  # 爆
    if i % 31 == 7:
        return -rng.randint(10, 25)  # X1, X2
    if i % 97 == 13:
        return -rng.randint(100, 105)  # XX
    return rng.choice((0, 0, 1, 2, 3, 5, 8, 12, 21, 34, 55, 89))


def build_board(spec: BoardSpec) -> Board:
    """The deterministic board of ``spec`` (same spec -> same posts, ids, links, images)."""
    rng = random.Random(spec.seed)
    images = _load_images(spec, rng)
    start = date.fromisoformat(spec.start_date)
    spacing = 86400 / spec.posts_per_day
    slots: list[Slot] = []
    next_image, live = 0, 0
    cats = [c for c, _ in CATEGORIES]
    weights = [w for _, w in CATEGORIES]
    for i in range(spec.posts):
        day, pos = divmod(i, spec.posts_per_day)
        ts = _day_start(start + timedelta(days=day)) + int(
            spacing * (pos + 0.5) + rng.uniform(-spacing / 4, spacing / 4)
        )
        post_id = f"M.{ts}.A.{rng.randrange(4096):03X}"
        author = f"user{rng.randrange(1000):03d}"
        kind = _kind(i, spec.extras)
        score = _score(i, rng)
        if kind == "deleted":
            title = f"(本文已被刪除) [{author}]" if i % 2 else f"(已被mod{i % 7}刪除) <{author}> 違反板規"
            slots.append(Slot(i, post_id, ts, kind, title, "-", score))
        elif kind == "announcement":
            slots.append(Slot(i, post_id, ts, kind, f"[公告] {spec.board} 板 板規修正 #{i}", "mod", 0))
        else:
            cat = rng.choices(cats, weights)[0]
            title = f"[{cat}] 第 {i} 篇 {BODY_LINES[cat][-2:]}"
            push_image = kind == "post" and live % 3 == 0
            slots.append(
                Slot(i, post_id, ts, kind, title, author, score, next_image, push_image, live if kind == "post" else -1)
            )
            if kind == "post":
                next_image += spec.images_per_post + push_image
                live += 1
    pinned: list[Slot] = []
    if spec.extras and slots:
        ts = slots[0].ts - 30 * 86400
        pinned.append(
            Slot(-1, f"M.{ts}.A.{rng.randrange(4096):03X}", ts, "announcement", f"[公告] {spec.board} 板規", "mod", 0)
        )
        pinned.extend(s for s in slots[:1] if s.kind == "post")
    if not images and any(s.kind == "post" for s in slots) and spec.images_per_post:
        raise ValueError("the board has posts with images but no images to serve")
    return Board(spec, images, slots, pinned)


# ---------------------------------------------------------------------------- markup


def _nrec(score: int) -> str:
    if score >= 100:
        return '<span class="hl f1">爆</span>'
    if score >= 10:
        return f'<span class="hl f3">{score}</span>'
    if score > 0:
        return f'<span class="hl f2">{score}</span>'
    if score <= -100:
        return '<span class="hl f1">XX</span>'
    if score <= -10:
        return f'<span class="hl f1">X{-score // 10}</span>'
    return ""


def _entry(board: Board, s: Slot) -> str:
    day = datetime.fromtimestamp(s.ts, TAIPEI)
    title = html.escape(s.title)
    if s.kind != "deleted":
        title = f'<a href="/bbs/{board.spec.board}/{s.post_id}.html">{title}</a>'
    menu = (
        ""
        if s.kind == "deleted"
        else (
            f'<div class="trigger">&#x22ef;</div><div class="dropdown"><div class="item">'
            f'<a href="/bbs/{board.spec.board}/search?q=author%3A{s.author}">'
            f"搜尋看板內 {s.author} 的文章</a></div></div>"
        )
    )
    return (
        f'<div class="r-ent">\n<div class="nrec">{_nrec(s.score)}</div>\n<div class="title">\n{title}\n</div>\n'
        f'<div class="meta">\n<div class="author">{s.author}</div>\n<div class="article-menu">{menu}</div>\n'
        f'<div class="date">{day.month:>2}/{day.day:02d}</div>\n<div class="mark">{"!" if s.index < 0 else ""}</div>\n'
        f"</div>\n</div>\n"
    )


def _page(title: str, main: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)} - 批踢踢實業坊</title>\n'
        f"</head>\n<body>\n{main}\n</body>\n</html>\n"
    )


def render_index(board: Board, name: str, base: str) -> str | None:
    """``index.html`` (newest) or ``index<N>.html``; None when N is out of range."""
    b, last = board.spec.board, board.pages
    number = name.removeprefix("index").removesuffix(".html")
    if number == "":
        n = last
    elif number.isdigit() and 1 <= int(number) <= last and not number.startswith("0"):
        n = int(number)
    else:
        return None

    def link(href, label):
        return f'<a class="btn wide" href="{href}">{label}</a>' if href else f'<a class="btn wide disabled">{label}</a>'

    paging = "".join(
        (
            link(f"/bbs/{b}/index1.html", "最舊"),
            link(f"/bbs/{b}/index{n - 1}.html" if n > 1 else None, "&lsaquo; 上頁"),
            link(f"/bbs/{b}/index{n + 1}.html" if n < last else None, "下頁 &rsaquo;"),
            link(f"/bbs/{b}/index.html", "最新"),
        )
    )
    entries = "".join(_entry(board, s) for s in board.slots[(n - 1) * ENTRIES_PER_PAGE : n * ENTRIES_PER_PAGE])
    if n == last and board.pinned:
        entries += '<div class="r-list-sep"></div>\n' + "".join(_entry(board, s) for s in board.pinned)
    main = (
        f'<div id="topbar-container"><div id="topbar" class="bbs-content"><a id="logo" href="/bbs/">批踢踢實業坊</a>'
        f'<a class="board" href="/bbs/{b}/index.html"><span class="board-label">看板 </span>{b}</a></div></div>\n'
        f'<div id="main-container">\n<div id="action-bar-container"><div class="action-bar">\n'
        f'<div class="btn-group btn-group-dir"><a class="btn selected" href="/bbs/{b}/index.html">看板</a></div>\n'
        f'<div class="btn-group btn-group-paging">{paging}</div>\n</div></div>\n'
        f'<div class="r-list-container action-bar-margin bbs-screen">\n{entries}</div>\n</div>'
    )
    return _page(f"看板 {b} 文章列表", main)


def _a(url: str) -> str:
    return f'<a href="{html.escape(url)}" target="_blank" rel="nofollow">{html.escape(url)}</a>'


def render_article(board: Board, name: str, base: str) -> str | None:
    """The article page ``<post_id>.html``; None for unknown ids and 'missing' posts."""
    slot = board.by_id.get(name.removesuffix(".html"))
    if slot is None or slot.kind in ("missing", "deleted"):
        return None
    b = board.spec.board
    when = datetime.fromtimestamp(slot.ts, TAIPEI)
    meta = "".join(
        f'<div class="{cls}"><span class="article-meta-tag">{tag}</span>'
        f'<span class="article-meta-value">{html.escape(val)}</span></div>'
        for cls, tag, val in (
            ("article-metaline", "作者", f"{slot.author} ({slot.author.upper()})"),
            ("article-metaline-right", "看板", b),
            ("article-metaline", "標題", slot.title),
            ("article-metaline", "時間", f"{when:%a %b} {when.day:>2} {when:%H:%M:%S %Y}"),
        )
    )
    links = board.links(slot) if slot.kind == "post" else []
    absolute = lambda href: href if href.startswith("http") else base + href  # noqa: E731
    body = [BODY_LINES.get(slot.category, "板務公告"), ""]
    for link in (x for x in links if x.source == "body"):
        body.append(_a(absolute(link.href)))
        if link.preview is not None:  # PTT's signed preview: never to be taken as a link
            body.append(
                f'<div class="richcontent"><img src="{base}/preview/s{slot.live}/{link.preview}" alt="" /></div>'
            )
    rng = random.Random(f"{board.spec.seed}:{slot.post_id}")
    tags = ["推 "] * max(slot.score, 0) + ["噓 "] * max(-slot.score, 0) + ["→ "] * rng.randint(0, 3)
    rng.shuffle(tags)
    contents = [html.escape(rng.choice(("正", "好看", "求出處", "推", "普"))) for _ in tags]
    for i, link in enumerate(x for x in links if x.source == "push"):
        tags.insert(i, "→ ")
        contents.insert(i, _a(absolute(link.href)))
    pushes = "".join(
        f'<div class="push"><span class="{"hl " if tag == "推 " else "f1 hl "}push-tag">{tag}</span>'
        f'<span class="f3 hl push-userid">fan{j:03d}</span><span class="f3 push-content">: {text}</span>'
        f'<span class="push-ipdatetime"> {(when + timedelta(minutes=j + 1)):%m/%d %H:%M}\n</span></div>'
        for j, (tag, text) in enumerate(zip(tags, contents, strict=False))
    )
    main = (
        f'<div id="main-container">\n<div id="main-content" class="bbs-screen bbs-content">{meta}\n'
        + "\n".join(body)
        + '\n\n--\n<span class="f2">※ 發信站: 批踢踢實業坊(ptt.cc), '
        + f"來自: 10.0.0.{slot.index % 250 + 1} (臺灣)\n</span>"
        f'<span class="f2">※ 文章網址: {_a(f"{base}/bbs/{b}/{slot.post_id}.html")}\n</span>{pushes}</div>\n</div>'
    )
    return _page(f"{slot.title} - 看板 {b}", main)


def render_gate(board: Board, query: str) -> str:
    """PTT's over-18 question page."""
    return _page(
        "批踢踢實業坊",
        '<div class="bbs-screen bbs-content center clear"><div class="over18-notice">'
        "<p>本網站已依網站內容分級規定處理</p><p>警告︰您即將進入之看板內容需滿十八歲方可瀏覽。</p></div>"
        f'<form action="/ask/over18" method="post"><input type="hidden" name="from" value="{html.escape(query)}">'
        '<button class="btn-big" type="submit" name="yes" value="yes">'
        "我同意，我已年滿十八歲<br><small>進入</small></button>"
        "</form></div>",
    )


# ---------------------------------------------------------------------------- images


def draw_face(seed: int, size: int = 256) -> bytes:
    """A procedurally drawn face (skin ellipse, eyes, brows, nose, mouth) as JPEG bytes."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    bg = tuple(rng.randint(90, 230) for _ in range(3))
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    s = size / 256
    skin = rng.choice(((241, 194, 167), (224, 172, 105), (198, 134, 66), (255, 219, 172), (141, 85, 36)))
    hair = rng.choice(((20, 20, 20), (90, 60, 30), (160, 120, 60), (60, 40, 30)))
    cx, cy = 128 + rng.randint(-12, 12), 136 + rng.randint(-8, 8)
    w, h = rng.randint(62, 76), rng.randint(84, 96)
    d.ellipse([(cx - w - 8) * s, (cy - h - 14) * s, (cx + w + 8) * s, (cy + h // 3) * s], fill=hair)
    d.ellipse([(cx - w) * s, (cy - h) * s, (cx + w) * s, (cy + h) * s], fill=skin)
    ex, ey = w * 0.42, cy - h * 0.18
    for sx in (-1, 1):
        x = cx + sx * ex
        d.ellipse([(x - 12) * s, (ey - 6) * s, (x + 12) * s, (ey + 6) * s], fill=(250, 250, 250))
        d.ellipse([(x - 5) * s, (ey - 5) * s, (x + 5) * s, (ey + 5) * s], fill=(40, 30, 20))
        d.line([(x - 13) * s, (ey - 15) * s, (x + 13) * s, (ey - 17) * s], fill=hair, width=max(1, int(4 * s)))
    d.polygon(
        [(cx * s, (cy - 6) * s), ((cx - 8) * s, (cy + 18) * s), ((cx + 8) * s, (cy + 18) * s)],
        fill=tuple(max(0, c - 30) for c in skin),
    )
    my = cy + h * 0.5
    d.chord([(cx - 22) * s, (my - 10) * s, (cx + 22) * s, (my + 10) * s], 0, 180, fill=(170, 60, 70))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@functools.lru_cache(maxsize=512)
def _image_bytes(asset: ImageAsset, seed: int) -> bytes:
    if asset.path is None:
        return draw_face(seed * 100_003 + asset.index)
    return asset.path.read_bytes()
