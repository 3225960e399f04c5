"""The HTML report as the pages' sibling: hostile text escaped exactly once, and one stylesheet and one
palette for the report, the pages and the timeline picture."""
import re
import typing
from datetime import datetime, timezone

from app.core.audit import Category, Context, Issue, Severity, SpanKind
from app.storage import audits as store
from app.storage.connect import connect
from audits.report import render
from audits.timeline import CATEGORY_COLOURS, KIND_COLOURS, SEVERITY_COLOURS, STYLESHEET_PATH
from tests.test_browser import browser, hold_audit, hold_wav, live_server  # noqa: F401 (fixtures)
from tests.test_report import GALAXY, built_result, parsed

# A transcript (and every other text from outside) may try to close a tag, open one, leave an attribute
# with a quote of either kind, end the inline stylesheet, or pass for a template expression.
HOSTILE = """<script>alert("x")</script> " onmouseover="alert(1)" ' onfocus='alert(2)' </style><b>&amp; {{ 7*7 }}"""
REPORT_TAGS = {"html", "head", "meta", "title", "style", "body", "main", "section", "article", "h1", "h2", "h3",
               "p", "figure", "div", "svg", "g", "rect", "polygon", "line", "text", "table", "caption", "thead",
               "tbody", "tr", "th", "td", "span", "a", "ul", "li", "details", "summary", "pre", "footer"}


def hostile_report() -> str:
    context = Context(open_issues=[Issue("CASE-1", "high", HOSTILE)], owned_products=[HOSTILE], queue=HOSTILE)
    result = built_result(f"{HOSTILE}.wav", texts=[HOSTILE, GALAXY, HOSTILE, GALAXY, HOSTILE], context=context)
    return render([result, result], "html", failures=[(HOSTILE, HOSTILE)])


def test_hostile_text_is_shown_as_written_and_never_becomes_markup():
    html = hostile_report()
    page = parsed(html)  # text as a browser reads it: character references resolved
    assert {tag for tag, _ in page.tags} <= REPORT_TAGS  # no script, no b: nothing the text opened
    assert not [name for _, attrs in page.tags for name in attrs if name.startswith("on")]
    assert html.count("<style>") == 1 and html.count("</style>") == 1
    # escaped exactly once: the reader sees the text as written (not '&amp;lt;', not 49)
    text = "".join(page.text)
    for where in ("Recording: " + HOSTILE + ".wav", "Caller: open issues CASE-1 (high, " + HOSTILE + ")",
                  "owns " + HOSTILE, "queue " + HOSTILE, HOSTILE + ": " + HOSTILE):
        assert where in text, where
    assert text.count(HOSTILE) > 20  # messages table, timeline rows, evidence, SVG tooltips, ...
    # ... in attribute values too: the SVG's label holds the recording name, quotes and all
    labels = [attrs["aria-label"] for tag, attrs in page.tags if tag == "svg"]
    assert labels and all(label.startswith(f"Timeline of {HOSTILE}.wav") for label in labels)
    assert '&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &#34; onmouseover=&#34;alert(1)&#34; ' \
           '&#39; onfocus=&#39;alert(2)&#39;' in html


def stylesheet_in(html: str) -> str:
    return re.search(r"<style>\n?(.*?)</style>", html, re.S).group(1)


def test_the_report_inlines_the_stylesheet_the_pages_serve(client):
    served = client.get("/assets/holdguard.css")
    assert served.status_code == 200 and served.mimetype == "text/css"
    report = render([built_result()], "html")
    assert stylesheet_in(report).startswith(served.text)
    links = re.findall(r'<link rel="stylesheet" href="([^"]+)">', client.get("/").text)
    assert links == ["/assets/holdguard.css", "/static/pages.css"]  # the shared look first, then the pages' own
    assert "<link" not in report  # the report is one file


def test_one_palette_for_the_timeline_the_badges_and_both_stylesheets(client):
    assert list(CATEGORY_COLOURS) == list(typing.get_args(Category))
    assert set(SEVERITY_COLOURS) == set(typing.get_args(Severity))
    assert set(KIND_COLOURS) == set(typing.get_args(SpanKind))
    shared = STYLESHEET_PATH.read_text()
    for severity, colour in SEVERITY_COLOURS.items():
        assert f"--severity-{severity}: {colour};" in shared
        assert f".severity-{severity} {{ background: var(--severity-{severity}); }}" in shared
    for category, colour in CATEGORY_COLOURS.items():
        assert f"--category-{category}: {colour};" in shared
    # the pages' own stylesheet defines no colour of the palette and no badge of its own
    pages_css = client.get("/static/pages.css").text
    assert not re.search(r"--(severity|category|kind)-\w+\s*:|\.(severity|category)-\w+\s*\{", pages_css)
    # the report's picture is drawn in those colours
    fills = {attrs["fill"] for tag, attrs in parsed(render([built_result()], "html")).tags
             if tag == "polygon" and "finding" in attrs.get("class", "")}
    assert fills == {SEVERITY_COLOURS["high"], SEVERITY_COLOURS["medium"]}


BADGE_STYLE = """elements => elements.map(element => {
    const style = getComputedStyle(element);
    return [style.backgroundColor, style.color, style.fontSize, style.fontWeight, style.fontFamily, style.borderRadius].join(" ");
})"""


def test_report_and_audit_page_look_the_same_in_chromium(live_server, browser, db_path, tmp_path):  # noqa: F811
    result = hold_audit(hold_wav(tmp_path / "hold.wav"))
    db = connect(db_path)
    audit_id = store.save(db, result, now=datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc))
    db.conn.close()
    report = tmp_path / "report.html"
    report.write_text(render([result], "html"))

    looks = []
    for url in (f"{live_server}/audits/{audit_id}", report.as_uri()):
        page = browser.new_page()
        page.goto(url)
        looks.append({selector: page.eval_on_selector_all(selector, BADGE_STYLE)[0]
                      for selector in (".badge.severity-high", ".badge.category-promo", "h1")}
                     | {"svg fills": page.eval_on_selector_all(
                         "svg.timeline .play, svg.timeline .finding", "shapes => shapes.map(s => s.getAttribute('fill'))")})
        page.close()
    on_page, in_report = looks
    assert on_page == in_report
    assert on_page[".badge.severity-high"].startswith("rgb(176, 0, 32) rgb(255, 255, 255)")  # #B00020
    assert set(on_page["svg fills"]) == {CATEGORY_COLOURS["promo"], SEVERITY_COLOURS["high"]}
