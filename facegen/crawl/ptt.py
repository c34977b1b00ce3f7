"""Pure parsing of PTT web pages: board index pages and article pages.

No network here: functions take HTML text and return plain dataclasses. Selection is by
CSS class, never by child position (the order of children inside an entry changed
between 2016 and 2024). Facts about the markup: ../shared/docs/ptt-web.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urljoin, urlsplit
from zoneinfo import ZoneInfo

from bs4 import BeautifulSoup, Tag

TAIPEI = ZoneInfo("Asia/Taipei")
ENTRIES_PER_PAGE = 20
POST_ID_RE = re.compile(r"M\.(\d{9,11})\.A\.([0-9A-Za-z]{1,4})")
_ARTICLE_HREF_RE = re.compile(r"/bbs/([^/]+)/(M\.\d+\.A\.[0-9A-Za-z]+)\.html$")
_INDEX_HREF_RE = re.compile(r"/bbs/[^/]+/index(\d+)\.html$")
_CATEGORY_RE = re.compile(r"^\s*(?:(?:Re|Fw|R|轉)\s*:\s*)*\[([^\]]+)\]")
ANNOUNCEMENT_PREFIXES = ("[公告]", "Fw: [公告]")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp")
IMGUR_HOSTS = ("imgur.com", "www.imgur.com", "m.imgur.com", "i.imgur.com")
_IMGUR_ID_RE = re.compile(r"^/([A-Za-z0-9]{5,10})(?:\.[A-Za-z]+)?$")
_SITE_LINE = "※ 發信站"


@dataclass(frozen=True)
class IndexEntry:
    """One row (``div.r-ent``) of a board index page.

    ``post_id``/``href`` are None for deleted entries. ``push`` is the raw ``nrec`` text
    and ``push_count`` its value (see :func:`parse_push_count`). ``pinned`` marks the
    entries below ``div.r-list-sep`` on the newest page.
    """

    post_id: str | None
    href: str | None
    title: str
    author: str
    date: str
    mark: str
    push: str
    push_count: int
    pinned: bool = False

    @property
    def deleted(self) -> bool:
        return self.post_id is None

    @property
    def timestamp(self) -> int | None:
        return None if self.post_id is None else post_timestamp(self.post_id)


@dataclass(frozen=True)
class IndexPage:
    """A parsed index page: its entries in page order and the paging links."""

    entries: tuple[IndexEntry, ...]
    prev_page: int | None
    next_page: int | None

    @property
    def listed(self) -> tuple[IndexEntry, ...]:
        """Entries of the chronological list (pinned entries left out)."""
        return tuple(e for e in self.entries if not e.pinned)

    @property
    def number(self) -> int | None:
        """This page's number, from its neighbours' links (newest page: previous + 1)."""
        if self.prev_page is not None:
            return self.prev_page + 1
        if self.next_page is not None:
            return self.next_page - 1
        return None


@dataclass(frozen=True)
class Push:
    """One comment: tag (推/噓/→), user id, content text (leading ': ' removed), links."""

    tag: str
    userid: str
    content: str
    ipdatetime: str
    links: tuple[str, ...] = ()


@dataclass(frozen=True)
class Article:
    """A parsed article page. Header fields are '' when the post has no header lines."""

    author: str
    board: str
    title: str
    time: str
    body: str
    body_links: tuple[str, ...]
    pushes: tuple[Push, ...] = field(default_factory=tuple)

    @property
    def author_id(self) -> str:
        """The account name without the nickname: 'joanzkow (星浪)' -> 'joanzkow'."""
        return self.author.split(" ", 1)[0].strip()

    @property
    def header_time(self) -> datetime | None:
        """The 時間 header line as a Taipei-aware datetime, None if absent or unparsable."""
        try:
            return datetime.strptime(" ".join(self.time.split()), "%a %b %d %H:%M:%S %Y").replace(tzinfo=TAIPEI)
        except ValueError:
            return None


class Over18GateError(RuntimeError):
    """The server answered with the over-18 gate instead of the page."""


def _soup(html: str) -> BeautifulSoup:
    return BeautifulSoup(html, "lxml")


def _text(tag: Tag | None) -> str:
    return "" if tag is None else tag.get_text(" ", strip=True)


def _div(node: Tag, cls: str) -> Tag | None:
    """The first ``div`` with CSS class ``cls`` under ``node`` (find() is ~10x faster than select)."""
    return node.find("div", class_=cls)


def _gate(soup: BeautifulSoup, what: str) -> None:
    if _div(soup, "over18-notice") is not None:
        raise Over18GateError(f"{what} page is the over-18 gate: send the cookie over18=1")


def is_over18_gate(html: str) -> bool:
    """True when the page is PTT's age gate (``div.over18-notice``)."""
    return "over18-notice" in html and _div(_soup(html), "over18-notice") is not None


def parse_push_count(text: str) -> int:
    """The ``nrec`` value of an index entry: '' -> 0, '12' -> 12, '爆' -> 100,
    'X1'..'X9' -> -10..-90, 'XX' -> -100 (爆 and XX are the board's caps)."""
    text = text.strip()
    if not text:
        return 0
    if text == "爆":
        return 100
    if text == "XX":
        return -100
    if len(text) == 2 and text[0] == "X" and text[1].isdigit():
        return -10 * int(text[1])
    if text.isdigit():
        return int(text)
    raise ValueError(f"unrecognised push count {text!r} (expected '', 1-99, 爆, X1-X9 or XX)")


def post_timestamp(post_id: str) -> int:
    """Unix time encoded in a post id: 'M.1704040318.A.E87' -> 1704040318."""
    m = POST_ID_RE.search(post_id)
    if m is None:
        raise ValueError(f"not a PTT post id: {post_id!r} (expected M.<unix time>.A.<hex>)")
    return int(m.group(1))


def post_time(post_id: str) -> datetime:
    """The post's creation time in Asia/Taipei, read from its id (no fetch needed)."""
    return datetime.fromtimestamp(post_timestamp(post_id), TAIPEI)


def post_id_from_url(url: str) -> str | None:
    """'.../bbs/Beauty/M.1704040318.A.E87.html' -> 'M.1704040318.A.E87'; None otherwise."""
    m = _ARTICLE_HREF_RE.search(urlsplit(url).path)
    return None if m is None else m.group(2)


def category(title: str) -> str:
    """The bracketed prefix of a title without brackets ('[正妹] x' -> '正妹'), '' if none.
    Reply/forward markers ('Re: ', 'Fw: ') are skipped."""
    m = _CATEGORY_RE.match(title)
    return "" if m is None else m.group(1).strip()


def is_announcement(title: str, prefixes: tuple[str, ...] = ANNOUNCEMENT_PREFIXES) -> bool:
    """Announcements: titles starting with one of ``prefixes`` ('[公告]', 'Fw: [公告]')."""
    return title.strip().startswith(prefixes)


def _page_number(a: Tag | None) -> int | None:
    if a is None or not a.get("href"):
        return None
    m = _INDEX_HREF_RE.search(str(a["href"]))
    return None if m is None else int(m.group(1))


def parse_index(html: str) -> IndexPage:
    """Entries and paging of a board index page (any markup variant 2016-2024)."""
    soup = _soup(html)
    _gate(soup, "index")
    prev_link = next_link = None
    for a in soup.find_all("a", class_="wide"):
        label = a.get_text(strip=True)
        if "上頁" in label:
            prev_link = a
        elif "下頁" in label:
            next_link = a
    entries: list[IndexEntry] = []
    container = _div(soup, "r-list-container")
    pinned = False
    for node in container.find_all("div", recursive=False) if container is not None else []:
        classes: list[str] = list(node.get("class") or [])
        if "r-list-sep" in classes:
            pinned = True
            continue
        if "r-ent" not in classes:
            continue
        title_div = _div(node, "title")
        link = title_div.find("a", href=True) if title_div is not None else None
        href = str(link["href"]) if link is not None else None
        nrec = _text(_div(node, "nrec"))
        entries.append(
            IndexEntry(
                post_id=post_id_from_url(href) if href else None,
                href=href,
                title=_text(link) if link is not None else _text(title_div),
                author=_text(_div(node, "author")),
                date=_text(_div(node, "date")),
                mark=_text(_div(node, "mark")),
                push=nrec,
                push_count=parse_push_count(nrec),
                pinned=pinned,
            )
        )
    return IndexPage(entries=tuple(entries), prev_page=_page_number(prev_link), next_page=_page_number(next_link))


def _links(node: Tag) -> list[str]:
    """``a[href]`` targets under ``node`` (never ``img[src]`` previews), CDN e-mail links left out."""
    out = []
    for a in node.find_all("a", href=True):
        href = str(a["href"]).strip()
        if "__cf_email__" in (a.get("class") or []) or href.startswith("/cdn-cgi/"):
            continue
        out.append(href)
    return out


def parse_article(html: str) -> Article:
    """Header lines, body text/links (up to '※ 發信站') and pushes of an article page."""
    soup = _soup(html)
    _gate(soup, "article")
    main = soup.find("div", id="main-content")
    if main is None:
        raise ValueError("not an article page: no div#main-content")
    meta: dict[str, str] = {}
    for line in main.find_all("div", class_=("article-metaline", "article-metaline-right")):
        meta[_text(line.find("span", class_="article-meta-tag"))] = _text(
            line.find("span", class_="article-meta-value")
        )
        line.extract()
    for node in main.find_all(("div", "script", "style")):
        if not node.decomposed and (node.name != "div" or "richcontent" in (node.get("class") or [])):
            node.decompose()
    pushes: list[Push] = []
    for div in main.find_all("div", class_="push"):
        content = div.find("span", class_="push-content")
        pushes.append(
            Push(
                tag=_text(div.find("span", class_="push-tag")),
                userid=_text(div.find("span", class_="push-userid")),
                content=_text(content).removeprefix(":").strip(),
                ipdatetime=_text(div.find("span", class_="push-ipdatetime")),
                links=tuple(_links(content)) if content is not None else (),
            )
        )
        div.extract()
    # the body: every node before the '※ 發信站' line (site signature, article URL, edits)
    for span in main.find_all("span", class_="f2"):
        if span.get_text().lstrip().startswith(_SITE_LINE):
            for sib in list(span.next_siblings):
                sib.extract()
            span.extract()
            break
    body = main.get_text()
    return Article(
        author=meta.get("作者", ""),
        board=meta.get("看板", ""),
        title=meta.get("標題", ""),
        time=meta.get("時間", ""),
        body=body.strip("\n"),
        body_links=tuple(_links(main)),
        pushes=tuple(pushes),
    )


def normalise_image_url(url: str) -> str | None:
    """The image URL a link points to, or None when the link is not a direct image.

    - ``imgur.com/<id>`` (no extension, not an ``/a/`` album or ``/gallery/``) ->
      ``https://i.imgur.com/<id>.jpg``; imgur links are always made https;
    - any other http(s) URL whose path ends in an image extension is kept as is;
    - everything else (albums, web pages, e-mail links) -> None.
    """
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    host = parts.hostname or ""
    path = parts.path
    if host in IMGUR_HOSTS:
        m = _IMGUR_ID_RE.match(path)
        if m is None:
            return None  # albums (/a/), galleries, user pages
        ext = path[len(m.group(1)) + 1 :].lower()
        if ext and ext not in IMAGE_EXTS:
            return None
        return f"https://i.imgur.com/{m.group(1)}{ext or '.jpg'}"
    if path.lower().endswith(IMAGE_EXTS):
        return url
    return None


def image_links(article: Article, base_url: str = "") -> list[tuple[str, str, str]]:
    """(url, source, raw_url) of every image link, body first then pushes, in page order.

    ``source`` is 'body' or 'push'; ``url`` is normalised; a URL already seen in the same
    article is left out (the first place it appeared wins). Relative links resolve against
    ``base_url``.
    """
    seen: set[str] = set()
    out: list[tuple[str, str, str]] = []
    candidates = [(href, "body") for href in article.body_links]
    candidates += [(href, "push") for push in article.pushes for href in push.links]
    for href, source in candidates:
        url = normalise_image_url(urljoin(base_url, href) if base_url else href)
        if url is not None and url not in seen:
            seen.add(url)
            out.append((url, source, href))
    return out
