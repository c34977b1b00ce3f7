"""facegen.crawl.ptt: parsing real PTT pages (../shared/ptt-pages) and Beauty markup variants 2016-2024."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from facegen.crawl import ptt


def _page(ptt_pages_dir: Path, name: str) -> str:
    return (ptt_pages_dir / name).read_text(encoding="utf-8")


# ------------------------------------------------------------------ real index pages


def test_stock_index_2024_with_moderator_deletions(ptt_pages_dir: Path) -> None:
    page = ptt.parse_index(_page(ptt_pages_dir, "dividendLeap_Stock_index6964_2024-02-29.html"))
    assert (page.prev_page, page.next_page, page.number) == (6963, 6965, 6964)
    assert len(page.entries) == 20 and page.listed == page.entries
    assert [i for i, e in enumerate(page.entries) if e.deleted] == [0, 3, 6]
    deleted = page.entries[0]
    assert (deleted.title, deleted.author, deleted.push_count, deleted.href) == (
        "(已被laptic刪除) <JerryHu> 1-4-2 4-2-1",
        "-",
        16,
        None,
    )
    e = page.entries[1]
    assert (e.post_id, e.href, e.title, e.author, e.date, e.push_count) == (
        "M.1709190964.A.2F6",
        "/bbs/Stock/M.1709190964.A.2F6.html",
        "[情報] 113/02/29 櫃買法人及個股買賣超",
        "q8977452",
        "2/29",
        19,
    )
    boom = [e for e in page.entries if e.push == "爆"]
    assert [(e.post_id, e.push_count) for e in boom] == [("M.1709199572.A.715", 100)]
    assert page.entries[-1].post_id == "M.1709204511.A.D5F"


def test_stock_index_2024_author_deleted_entry(ptt_pages_dir: Path) -> None:
    page = ptt.parse_index(_page(ptt_pages_dir, "dividendLeap_Stock_index6965_2024-02-29.html"))
    assert page.number == 6965
    assert [(i, e.title, e.push) for i, e in enumerate(page.entries) if e.deleted] == [
        (8, "(本文已被刪除) [pqpqpqpq]", "")
    ]
    assert page.entries[0].post_id == "M.1709207019.A.650" and page.entries[19].post_id == "M.1709216280.A.1B1"


def test_stock_newest_page_separator_and_pinned(ptt_pages_dir: Path) -> None:
    page = ptt.parse_index(_page(ptt_pages_dir, "dividendLeap_Stock_index_newest_2024-02-29.html"))
    assert (page.prev_page, page.next_page, page.number) == (6965, None, 6966)
    assert [e.post_id for e in page.listed] == [
        "M.1709218755.A.02E",
        "M.1709218876.A.B93",
        "M.1709219116.A.A75",
        "M.1709219216.A.243",
    ]
    assert next(e.title for e in page.listed) == "[新聞] Fake Title HIHI"
    pinned = [e for e in page.entries if e.pinned]
    assert [(e.post_id, e.mark, e.push_count) for e in pinned] == [
        ("M.1667716869.A.C66", "!", 0),
        ("M.1707982684.A.D43", "!", 0),
        ("M.1709186402.A.B86", "", 100),
    ]
    assert [ptt.is_announcement(e.title) for e in pinned] == [True, True, False]


def test_lol_index_2018_older_child_order(ptt_pages_dir: Path) -> None:
    page = ptt.parse_index(_page(ptt_pages_dir, "ptt-alertor_LoL_index_2018_trimmed.html"))
    assert page.number == 9852
    (e,) = page.listed
    assert (e.post_id, e.title, e.author, e.date, e.push_count, e.mark) == (
        "M.1516285019.A.BCE",
        "[外絮] JTeam FB",
        "Andy7577272",
        "1/18",
        2,
        "",
    )
    assert [(p.post_id, p.mark, p.push_count) for p in page.entries if p.pinned] == [("M.1512746508.A.54D", "M", 100)]


def test_lol_index_2016_pull_right_paging(ptt_pages_dir: Path) -> None:
    page = ptt.parse_index(_page(ptt_pages_dir, "pttifierLib_LoL_index_2016_hand-edited.html"))
    assert (page.prev_page, page.next_page, page.number) == (4380, 4382, 4381)
    assert [e.post_id for e in page.listed] == [
        "M.1457622048.A.D80",
        "M.1457622048.A.Z80",
        "M.1457622282.A.D4F",
        None,
        "M.1457622407.A.C98",
        "M.1457622551.A.650",
    ]
    assert page.listed[3].title == "(本文已被刪除) [asdxxg5]"
    assert [e.author for e in page.listed[:2]] == ["[彩券]", "[彩券]"]
    assert len([e for e in page.entries if e.pinned]) == 5


def test_allpost_index_2020(ptt_pages_dir: Path) -> None:
    page = ptt.parse_index(_page(ptt_pages_dir, "pttsnitch_ALLPOST_index_2020.html"))
    assert page.number == 3637 and len(page.listed) == 20
    assert {e.push_count for e in page.entries} == {0}
    assert (page.entries[0].post_id, page.entries[0].author) == ("M.1597604423.A.A73", "Anonymous.")
    assert page.entries[-1].title == "[揪團] 8/22(六)快樂練歌團-錢櫃台北南… (KTV)"


# ------------------------------------------------------------------ real article pages


def test_go_article_2020(ptt_pages_dir: Path) -> None:
    a = ptt.parse_article(_page(ptt_pages_dir, "pttsnitch_GO_article_M.1597603762.A.135_2020.html"))
    assert (a.author, a.author_id, a.board, a.title) == ("joanzkow (星浪)", "joanzkow", "GO", "%s")
    assert a.header_time == datetime(2020, 8, 17, 2, 49, 15, tzinfo=ptt.TAIPEI)
    assert abs((ptt.post_time("M.1597603762.A.135") - a.header_time).total_seconds()) < 60
    # the body ends at '※ 發信站': the article's own URL after it is not a body link
    assert a.body_links == ("https://sports.sina.com.cn/go/2020-08-16/doc-iivhvpwy1334335.shtml",)
    assert a.body.startswith("以卵擊石 朴廷桓九段拒絕參加KBS杯圍棋王戰？") and "發信站" not in a.body
    assert a.pushes == (ptt.Push("推", "pan0531", "最後一段是作者沒睡醒寫的嗎???", "08/17 02:53"),)
    assert ptt.image_links(a) == []


def test_article_2017_cdn_email_links_are_not_links(ptt_pages_dir: Path) -> None:
    a = ptt.parse_article(_page(ptt_pages_dir, "ptt-alertor_TFSHS66th321_article_M.1498563199.A.35C_2017.html"))
    assert (a.author_id, a.title, a.body) == ("ChoDino", "[小葉] 公告測試", "測\n\n--")
    assert [p.ipdatetime for p in a.pushes] == ["01/01 00:55", "01/02 10:22", "01/02 10:26", "01/02 13:57"]
    assert all(p.links == () for p in a.pushes) and a.body_links == ()


def test_gossiping_article_2016_quoted_links_and_pushes(ptt_pages_dir: Path) -> None:
    a = ptt.parse_article(_page(ptt_pages_dir, "pttifierLib_Gossiping_article_M.1459688662.A.CFE_2016.html"))
    assert a.title == "Re: [新聞] 5年7起隨機殺人 台灣社會學到甚麼？"
    assert a.time == "Sun Apr  3 21:04:15 2016"
    assert a.body_links == ("http://www.ntdtv.com.tw/b5/20160402/video/169005.html",) * 2
    assert [p.tag for p in a.pushes] == ["噓", "→", "推", "→", "噓", "→", "推", "→"]
    assert (a.pushes[0].userid, a.pushes[0].content) == ("skyexers", "還沒崩潰完？")


# ------------------------------------------------------------------ Beauty markup variants


def _r_ent(nrec: str, title_html: str, author: str, date: str, mark: str = "", order_2016: bool = False) -> str:
    nrec_html = f'<span class="hl f3">{nrec}</span>' if nrec else ""
    if order_2016:  # 2016: nrec, mark, title, meta(date, author)
        return (
            f'<div class="r-ent"><div class="nrec">{nrec_html}</div><div class="mark">{mark}</div>'
            f'<div class="title">{title_html}</div><div class="meta"><div class="date">{date}</div>'
            f'<div class="author">{author}</div></div></div>'
        )
    return (
        f'<div class="r-ent"><div class="nrec">{nrec_html}</div><div class="title">{title_html}</div>'
        f'<div class="meta"><div class="author">{author}</div><div class="article-menu"></div>'
        f'<div class="date">{date}</div><div class="mark">{mark}</div></div></div>'
    )


BEAUTY_2016 = (
    '<html><body><div class="btn-group pull-right"><a class="btn wide" href="/bbs/Beauty/index1.html">最舊</a>'
    '<a class="btn wide" href="/bbs/Beauty/index1999.html">&lsaquo; 上頁</a>'
    '<a class="btn wide" href="/bbs/Beauty/index2001.html">下頁 &rsaquo;</a></div>'
    '<div class="r-list-container bbs-screen">'
    + _r_ent(
        "X1", '<a href="/bbs/Beauty/M.1451606400.A.001.html">[正妹] 新年快樂</a>', "alice", " 1/01", order_2016=True
    )
    + _r_ent(
        "XX",
        '<a href="/bbs/Beauty/M.1451606500.A.0FF.html">Re: [神人] 這是誰</a>',
        "bob",
        " 1/01",
        "M",
        order_2016=True,
    )
    + _r_ent("", "(本文已被刪除) [carol]", "-", " 1/01", order_2016=True)
    + _r_ent(
        "爆", '<a href="/bbs/Beauty/M.1451606600.A.A0B.html">Fw: [公告] 板規</a>', "mod", " 1/01", "!", order_2016=True
    )
    + "</div></body></html>"
)

BEAUTY_2024 = (
    '<html><body><div class="btn-group btn-group-paging"><a class="btn wide" href="/bbs/Beauty/index1.html">最舊</a>'
    '<a class="btn wide" href="/bbs/Beauty/index3999.html">&lsaquo; 上頁</a><a class="btn wide disabled">下頁 &rsaquo;</a>'
    '<a class="btn wide" href="/bbs/Beauty/index.html">最新</a></div>'
    '<div class="r-list-container action-bar-margin bbs-screen"><div class="search-bar"></div>'
    + _r_ent("9", '<a href="/bbs/Beauty/M.1704040318.A.E87.html">[正妹] 跨年</a>', "dave", "1/01")
    + _r_ent("X9", '<a href="/bbs/Beauty/M.1704040999.A.1C2.html">[帥哥] 某某</a>', "erin", "1/01")
    + _r_ent("", "(已被mod刪除) &lt;frank&gt; 違規", "-", "1/01")
    + '<div class="r-list-sep"></div>'
    + _r_ent("", '<a href="/bbs/Beauty/M.1700000000.A.AAA.html">[公告] 表特板 板規</a>', "mod", "11/15", "!")
    + "</div></body></html>"
)


def test_beauty_index_2016_variant() -> None:
    page = ptt.parse_index(BEAUTY_2016)
    assert page.number == 2000
    assert [(e.post_id, e.push_count, e.author, e.mark) for e in page.entries] == [
        ("M.1451606400.A.001", -10, "alice", ""),
        ("M.1451606500.A.0FF", -100, "bob", "M"),
        (None, 0, "-", ""),
        ("M.1451606600.A.A0B", 100, "mod", "!"),
    ]
    assert [ptt.category(e.title) for e in page.entries] == ["正妹", "神人", "", "公告"]
    assert [ptt.is_announcement(e.title) for e in page.entries] == [False, False, False, True]
    assert ptt.is_announcement(" [閒聊] hi", ("[閒聊]",)) and not ptt.is_announcement("[公告] x", ("[閒聊]",))
    assert page.entries[0].timestamp == 1451606400


def test_beauty_index_2024_variant() -> None:
    page = ptt.parse_index(BEAUTY_2024)
    assert (page.number, page.next_page) == (4000, None)
    assert [(e.post_id, e.push_count) for e in page.listed] == [
        ("M.1704040318.A.E87", 9),
        ("M.1704040999.A.1C2", -90),
        (None, 0),
    ]
    assert [e.post_id for e in page.entries if e.pinned] == ["M.1700000000.A.AAA"]


BEAUTY_ARTICLE = """<html><body><div id="main-container"><div id="main-content" class="bbs-screen bbs-content">
<div class="article-metaline"><span class="article-meta-tag">作者</span><span class="article-meta-value">dave (大衛)</span></div>
<div class="article-metaline-right"><span class="article-meta-tag">看板</span><span class="article-meta-value">Beauty</span></div>
<div class="article-metaline"><span class="article-meta-tag">標題</span><span class="article-meta-value">[正妹] 跨年</span></div>
<div class="article-metaline"><span class="article-meta-tag">時間</span><span class="article-meta-value">Mon Jan  1 00:31:58 2024</span></div>
跨年看到的
<a href="http://imgur.com/AbCdEf1" target="_blank" rel="nofollow">http://imgur.com/AbCdEf1</a>
<div class="richcontent"><img src="https://cache.ptt.cc/c/https/i.imgur.com/AbCdEf1h.jpg?e=1&amp;s=sig" alt=""></div>
<a href="https://i.imgur.com/Qwe123x.png" target="_blank" rel="nofollow">https://i.imgur.com/Qwe123x.png</a>
<a href="https://imgur.com/a/AlBuM12" target="_blank" rel="nofollow">https://imgur.com/a/AlBuM12</a>
<a href="https://imgur.com/gallery/GaLLe12" target="_blank" rel="nofollow">https://imgur.com/gallery/GaLLe12</a>
<a href="https://www.instagram.com/p/C1x2y3/" target="_blank" rel="nofollow">https://www.instagram.com/p/C1x2y3/</a>
<span class="f6">: <a href="https://pbs.twimg.com/media/GBx.jpg?name=orig" target="_blank" rel="nofollow">https://pbs.twimg.com/media/GBx.jpg?name=orig</a>
</span>
--
<span class="f2">※ 發信站: 批踢踢實業坊(ptt.cc), 來自: 1.2.3.4 (臺灣)
</span><span class="f2">※ 文章網址: <a href="https://www.ptt.cc/bbs/Beauty/M.1704040318.A.E87.html">https://www.ptt.cc/bbs/Beauty/M.1704040318.A.E87.html</a>
</span><span class="f2">※ 編輯: dave (1.2.3.4 臺灣), 01/01/2024 00:40:00 <a href="https://i.imgur.com/Edit123.jpg">https://i.imgur.com/Edit123.jpg</a>
</span><div class="push"><span class="hl push-tag">推 </span><span class="f3 hl push-userid">fan1</span><span class="f3 push-content">: <a href="https://i.meee.com.tw/Zz9.jpg" target="_blank" rel="nofollow">https://i.meee.com.tw/Zz9.jpg</a></span><span class="push-ipdatetime"> 1.2.3.4 01/01 00:35
</span></div><div class="push"><span class="f1 hl push-tag">→ </span><span class="f3 hl push-userid">fan2</span><span class="f3 push-content">: 同一張 <a href="https://imgur.com/AbCdEf1">https://imgur.com/AbCdEf1</a></span><span class="push-ipdatetime"> 01/01 00:36
</span></div></div></div></body></html>"""


def test_beauty_article_image_links() -> None:
    a = ptt.parse_article(BEAUTY_ARTICLE)
    assert (a.author_id, a.board, a.title) == ("dave", "Beauty", "[正妹] 跨年")
    assert a.header_time == ptt.post_time("M.1704040318.A.E87") == datetime(2024, 1, 1, 0, 31, 58, tzinfo=ptt.TAIPEI)
    assert [(p.tag, p.userid, p.ipdatetime) for p in a.pushes] == [
        ("推", "fan1", "1.2.3.4 01/01 00:35"),
        ("→", "fan2", "01/01 00:36"),
    ]
    # previews (<img>) are never links; albums, galleries and web pages are not images; the
    # imgur link repeated in a push is kept once, from the body; links after 發信站 are ignored
    assert ptt.image_links(a) == [
        ("https://i.imgur.com/AbCdEf1.jpg", "body", "http://imgur.com/AbCdEf1"),
        ("https://i.imgur.com/Qwe123x.png", "body", "https://i.imgur.com/Qwe123x.png"),
        ("https://pbs.twimg.com/media/GBx.jpg?name=orig", "body", "https://pbs.twimg.com/media/GBx.jpg?name=orig"),
        ("https://i.meee.com.tw/Zz9.jpg", "push", "https://i.meee.com.tw/Zz9.jpg"),
    ]


def test_article_without_header_lines() -> None:
    html = (
        '<div id="main-content">沒有標頭 <a href="https://i.imgur.com/NoHead1.jpg">x</a>\n--\n'
        '<span class="f2">※ 發信站: 批踢踢實業坊(ptt.cc)\n</span></div>'
    )
    a = ptt.parse_article(html)
    assert (a.author, a.title, a.time, a.header_time, a.pushes) == ("", "", "", None, ())
    assert a.body_links == ("https://i.imgur.com/NoHead1.jpg",)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://imgur.com/AbCdEf1", "https://i.imgur.com/AbCdEf1.jpg"),
        ("http://m.imgur.com/AbCdEf1", "https://i.imgur.com/AbCdEf1.jpg"),
        ("http://i.imgur.com/AbCdEf1", "https://i.imgur.com/AbCdEf1.jpg"),
        ("https://i.imgur.com/AbCdEf1.JPEG", "https://i.imgur.com/AbCdEf1.jpeg"),
        ("https://imgur.com/a/AbCdEf1", None),
        ("https://imgur.com/gallery/AbCdEf1", None),
        ("https://imgur.com/user/someone", None),
        ("https://i.imgur.com/AbCdEf1.gifv", None),
        ("https://d.img.vision/x/abc.webp", "https://d.img.vision/x/abc.webp"),
        ("https://upload.cc/i1/2024/01/01/ABC.PNG", "https://upload.cc/i1/2024/01/01/ABC.PNG"),
        ("https://www.ptt.cc/bbs/Beauty/M.1704040318.A.E87.html", None),
        ("/cdn-cgi/l/email-protection", None),
        ("ftp://example.com/a.jpg", None),
    ],
)
def test_normalise_image_url(url: str, expected: str | None) -> None:
    assert ptt.normalise_image_url(url) == expected


@pytest.mark.parametrize(
    ("text", "value"), [("", 0), ("1", 1), ("99", 99), ("爆", 100), ("X1", -10), ("X9", -90), ("XX", -100)]
)
def test_parse_push_count(text: str, value: int) -> None:
    assert ptt.parse_push_count(text) == value


def test_bad_push_count_and_post_id_are_errors() -> None:
    with pytest.raises(ValueError, match="push count 'Y1'"):
        ptt.parse_push_count("Y1")
    with pytest.raises(ValueError, match="not a PTT post id"):
        ptt.post_timestamp("index12.html")


def test_post_id_helpers() -> None:
    assert ptt.post_id_from_url("https://www.ptt.cc/bbs/Beauty/M.1704040318.A.E87.html") == "M.1704040318.A.E87"
    assert ptt.post_id_from_url("/bbs/Beauty/index12.html") is None
    assert ptt.category("Re: Fw: [神人] x") == "神人" and ptt.category("心疼") == ""


def test_over18_gate_is_recognised() -> None:
    gate = '<html><body><div class="over18-notice"><p>警告</p></div></body></html>'
    assert ptt.is_over18_gate(gate) and not ptt.is_over18_gate(BEAUTY_2024)
    with pytest.raises(ptt.Over18GateError, match="over18=1"):
        ptt.parse_index(gate)
    with pytest.raises(ptt.Over18GateError):
        ptt.parse_article(gate)
