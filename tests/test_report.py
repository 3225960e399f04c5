"""Reports from hand-built audit results: the JSON contract, what people read, hostile text escaped."""
import json
import re
from html.parser import HTMLParser

import pytest

from app.core.audit import AuditResult, Context, Issue, Span

from audits.data import Transcript
from audits.pipeline import analyse
from audits.report import render, timeline_strip

GALAXY = "Upgrade to the brand new Galaxy S7 today and get 50% off your first three months."
THANKS = "Thank you for your patience. Your call is important to us."
HOSTILE = "<script>alert('x')</script> | *bold* [link](http://evil) & more"
DANA = Context(open_issues=[Issue("CASE-1042", "high", "Galaxy S7 reboots during calls")],
               owned_products=["Galaxy S7"], queue="support")


def built_result(recording="hold.wav", texts=None, context=DANA) -> AuditResult:
    """A 10-minute hold: the promo 5 times, reassurance twice, a 40 s silence; through the real stages."""
    texts = texts or [GALAXY, THANKS, GALAXY, GALAXY, THANKS, GALAXY, GALAXY]
    segments, transcripts, at_s = [], [], 0.0
    for index, text in enumerate(texts):
        segments.append(Span(at_s, at_s + 50.0, "music"))
        if index == 3:
            segments.append(Span(at_s + 50.0, at_s + 90.0, "silence"))
            at_s += 40.0
        segments.append(Span(at_s + 50.0, at_s + 60.0, "speech"))
        transcripts.append(Transcript(at_s + 50.0, at_s + 60.0, text))
        at_s += 60.0
    segments.append(Span(at_s, 600.0, "music"))
    return analyse(recording, 600.0, segments, transcripts, context)


@pytest.fixture
def result():
    return built_result()


def test_json_is_exactly_the_contract(result):
    report = json.loads(render([result], "json"))
    assert list(report) == ["recording", "duration_s", "segments", "messages", "findings", "summary"]
    assert report["recording"] == "hold.wav" and report["duration_s"] == 600.0
    assert report["segments"][0] == {"start_s": 0.0, "end_s": 50.0, "kind": "music"}
    assert report["messages"][0] == {"id": "m1", "category": "promo", "text": GALAXY, "plays": 5,
                                     "play_times_s": [50.0, 170.0, 270.0, 390.0, 450.0], "products": ["Galaxy S7"],
                                     "low_confidence_words": None}  # issue #14's, added: these texts have no words
    assert [f["rule"] for f in report["findings"]] == [
        "repeated_promo", "promo_during_open_issue", "promo_for_owned_product", "long_silence"]
    first = report["findings"][0]
    assert list(first) == ["rule", "severity", "message_id", "count", "evidence", "at_s"]
    assert (first["severity"], first["count"], first["message_id"]) == ("medium", 5, "m1")
    assert set(report["summary"]) == {"speech_s", "music_s", "silence_s", "promo_s", "promo_share", "findings"}
    assert report["summary"]["findings"] == 4 and report["summary"]["promo_s"] == 50.0


def test_json_batch_is_a_list(result):
    other = built_result("other.wav", texts=[THANKS], context=Context())
    reports = json.loads(render([result, other], "json"))
    assert [r["recording"] for r in reports] == ["hold.wav", "other.wav"]
    assert reports[1]["findings"] == []
    assert isinstance(json.loads(render([result], "json", batch=True)), list)


def test_markdown_names_findings_messages_and_times(result):
    md = render([result], "md")
    assert md.startswith("# Hold audit: hold.wav")
    assert "10:00 on hold" in md and "promos 50 s (8.3% of the hold)" in md
    assert "Caller: open issues CASE-1042 (high, Galaxy S7 reboots during calls); owns Galaxy S7" in md
    assert re.search(r"\| medium \| repeated_promo \| m1 \| 5 \| promo m1 'Upgrade to the brand new Galaxy S7…'"
                     r" played 5×", md)
    assert "while CASE-1042 (high) is open" in md
    assert "| m1 | promo | 5 | 00:50, 02:50, 04:30, 06:30, 07:30 | Galaxy S7 |" in md
    assert "| 03:50 | 04:30 | silence |  |" in md
    assert "| 00:50 | 01:00 | speech: promo | m1 Upgrade to the brand new Galaxy S7" in md


def test_reports_are_titled_with_the_file_name_and_give_the_path_below():
    result = built_result("/srv/holdguard/recordings/2026-11-20/RE0123.wav")
    md = render([result], "md")
    assert md.startswith("# Hold audit: RE0123.wav\n\nRecording: /srv/holdguard/recordings/2026-11-20/RE0123.wav\n")
    html = render([result], "html")
    assert "<title>Hold audit: RE0123.wav</title>" in html and "<h1>Hold audit: RE0123.wav</h1>" in html
    assert '<p class="path">Recording: /srv/holdguard/recordings/2026-11-20/RE0123.wav</p>' in html
    assert 'class="path"' not in render([built_result("hold.wav")], "html")  # a bare name says it once


def test_markdown_batch_has_a_summary_and_failures(result):
    other = built_result("other.wav", texts=[THANKS], context=Context())
    md = render([result, other], "md", failures=[("broken.wav", "not an audio file")])
    assert md.startswith("# Hold audits: 2 recordings")
    assert "## Batch summary" in md and "- broken.wav: not an audio file" in md
    assert "## Hold audit: hold.wav" in md and "## Hold audit: other.wav" in md
    assert "| other.wav | 10:00 | 0.0% | 0 | 0 | 0 | 0 | – |" in md


def test_timeline_strip_shows_promos_silence_and_music(result):
    strip, axis, legend = timeline_strip(result, cells=60).split("\n")
    assert len(strip) == 60 and strip.count("P") == 5 and strip.count("R") == 2
    assert "...." in strip and strip.startswith("~~~~~")
    assert axis.startswith("00:00") and axis.endswith("10:00")


class TagCollector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.text = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parsed(html: str) -> TagCollector:
    collector = TagCollector()
    collector.feed(html)
    return collector


def test_html_is_self_contained_and_names_what_went_wrong(result):
    html = render([result], "html")
    page = parsed(html)
    tags = [tag for tag, _ in page.tags]
    assert "script" not in tags and "link" not in tags and "img" not in tags
    assert "svg" in tags  # the timeline picture
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    text = " ".join(page.text)
    assert "repeated_promo" in text and "played 5×" in text and "CASE-1042 (high) is open" in text


def test_html_escapes_hostile_transcripts_and_file_names():
    result = built_result("<img src=x onerror=alert(1)>.wav", texts=[HOSTILE, GALAXY, HOSTILE, HOSTILE, HOSTILE])
    html = render([result, result], "html", failures=[("<b>bad</b>.wav", "<i>oops</i>")])
    page = parsed(html)
    tags = {tag for tag, _ in page.tags}
    assert not tags & {"script", "img", "b", "i"}
    assert not any(name.startswith("on") for _, attrs in page.tags for name in attrs)
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    md = render([result], "md")
    assert "<script>" not in md and "&lt;script&gt;" in md and "\\| \\*bold\\*" in md


def test_html_batch_links_each_recording(result):
    other = built_result("other.wav", texts=[THANKS], context=Context())
    page = parsed(render([result, other], "html"))
    links = [attrs["href"] for tag, attrs in page.tags if tag == "a"]
    ids = [attrs.get("id") for tag, attrs in page.tags if tag == "article"]
    assert links == ["#recording-1", "#recording-2"] and ids == ["recording-1", "recording-2"]
    assert "Batch summary" in " ".join(page.text)


def test_unknown_format():
    with pytest.raises(ValueError, match="unknown report format 'pdf'"):
        render([], "pdf")


def test_a_hold_with_no_speech_reads_sensibly():
    quiet = AuditResult("quiet.wav", 60.0, [Span(0.0, 60.0, "music")], [], [],
                        {"speech_s": 0.0, "music_s": 60.0, "silence_s": 0.0, "promo_s": 0.0, "promo_share": 0.0,
                         "findings": 0})
    md = render([quiet], "md")
    assert "No findings" in md and "No speech was heard." in md
    assert "Caller: no context" in md
    assert "No findings" in render([quiet], "html")
