"""The timeline SVG: valid, to scale, coloured by category, findings marked, everything escaped."""
import xml.etree.ElementTree as ET

import pytest

from app.core.audit import AuditResult, Finding, Message, Span
from audits.timeline import CATEGORY_COLOURS, SEVERITY_COLOURS, format_mmss, timeline_svg

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = '<script>alert("x")</script> & "quotes"'


def hold_result(**overrides) -> AuditResult:
    """A 45-minute hold: music, a promo played three times, one reassurance, a dead-air gap."""
    promo = Message(id="m1", text="Upgrade to the brand new Galaxy S7 today.", category="promo",
                    play_times_s=[70.0, 1000.0, 2000.0], play_ends_s=[80.0, 1010.0, 2010.0],
                    products=["Galaxy S7"])
    thanks = Message(id="m2", text="Thank you for your patience.", category="reassurance",
                     play_times_s=[400.0], play_ends_s=[405.0])
    fields = dict(
        recording="hold.wav", duration_s=2700.0,
        segments=[Span(0.0, 70.0, "music"), Span(70.0, 80.0, "speech"), Span(80.0, 400.0, "music"),
                  Span(400.0, 405.0, "speech"), Span(405.0, 460.0, "silence"),
                  Span(460.0, 2700.0, "music")],
        messages=[promo, thanks],
        findings=[Finding("repeated_promo", "high", "m1", 3, "m1 played 3 times", [70.0, 1000.0, 2000.0]),
                  Finding("long_silence", "medium", None, 1, "55 s of silence", [405.0]),
                  Finding("promo_share_high", "low", None, 1, "no moment cited", [])],
        summary={"findings": 3},
    )
    fields.update(overrides)
    return AuditResult(**fields)


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # raises on anything that is not well-formed XML


def test_format_mmss():
    assert format_mmss(0) == "0:00"
    assert format_mmss(70.4) == "1:10"
    assert format_mmss(59.6) == "1:00"
    assert format_mmss(4500) == "75:00"
    assert format_mmss(-3) == "0:00"


def test_plays_are_coloured_by_category_and_placed_to_scale():
    root = parse(timeline_svg(hold_result(), width_px=1000))
    assert root.get("role") == "img" and "hold.wav" in root.get("aria-label")
    plays = [r for r in root.iter(f"{SVG}rect") if "play" in (r.get("class") or "").split()]
    assert len(plays) == 4
    promo_plays = [r for r in plays if r.get("data-message-id") == "m1"]
    assert {r.get("fill") for r in promo_plays} == {CATEGORY_COLOURS["promo"]}
    assert [float(r.get("data-start-s")) for r in promo_plays] == [70.0, 1000.0, 2000.0]
    # 1000 px wide with 12 px margins: 976 px for 2700 s
    first = promo_plays[0]
    assert float(first.get("x")) == pytest.approx(12 + 70 / 2700 * 976, abs=0.1)
    assert float(first.get("width")) == pytest.approx(10 / 2700 * 976, abs=0.1)
    reassurance = [r for r in plays if r.get("data-message-id") == "m2"]
    assert reassurance[0].get("fill") == CATEGORY_COLOURS["reassurance"]
    tooltip = first.find(f"{SVG}title").text
    assert "m1 (promo) play 1 of 3, 1:10–1:20" in tooltip and "Galaxy S7" in tooltip


def test_segments_drawn_by_kind():
    root = parse(timeline_svg(hold_result()))
    kinds = [r.get("class") for r in root.iter(f"{SVG}rect") if "segment" in (r.get("class") or "")]
    assert kinds.count("segment segment-music") == 3
    assert kinds.count("segment segment-silence") == 1
    assert kinds.count("segment segment-speech") == 2


def test_findings_marked_at_each_moment_with_severity():
    root = parse(timeline_svg(hold_result()))
    marks = [p for p in root.iter(f"{SVG}polygon") if "finding" in (p.get("class") or "")]
    # three repeated_promo moments + one long_silence; a finding with no moment draws nothing
    assert sorted((m.get("data-rule"), float(m.get("data-at-s"))) for m in marks) == [
        ("long_silence", 405.0), ("repeated_promo", 70.0), ("repeated_promo", 1000.0),
        ("repeated_promo", 2000.0)]
    assert {m.get("fill") for m in marks if m.get("data-rule") == "repeated_promo"} == {SEVERITY_COLOURS["high"]}
    assert "55 s of silence" in [m for m in marks if m.get("data-rule") == "long_silence"][0].find(f"{SVG}title").text


def test_coincident_findings_stack_instead_of_overlapping():
    result = hold_result(findings=[
        Finding("repeated_promo", "high", "m1", 3, "a", [70.0]),
        Finding("promo_during_open_issue", "high", "m1", 1, "b", [70.0])])
    marks = [p for p in parse(timeline_svg(result)).iter(f"{SVG}polygon") if p.get("data-rule")]
    tips_y = sorted(float(m.get("points").split()[0].split(",")[1]) for m in marks)
    assert tips_y[1] > tips_y[0]


def test_axis_in_minutes_and_seconds():
    texts = [t.text for t in parse(timeline_svg(hold_result())).iter(f"{SVG}text") if t.get("class") == "tick"]
    assert texts == ["0:00", "5:00", "10:00", "15:00", "20:00", "25:00", "30:00", "35:00", "40:00", "45:00"]
    short = [t.text for t in parse(timeline_svg(hold_result(duration_s=40.0, segments=[], messages=[], findings=[])))
             .iter(f"{SVG}text") if t.get("class") == "tick"]
    assert short == ["0:00", "0:05", "0:10", "0:15", "0:20", "0:25", "0:30", "0:35", "0:40"]


def test_legend_names_every_category_and_present_severities():
    labels = [t.text for t in parse(timeline_svg(hold_result())).iter(f"{SVG}text") if t.get("class") != "tick"]
    for name in ["music", "silence", *CATEGORY_COLOURS, "high finding", "medium finding"]:
        assert name in labels
    assert "low finding" not in labels  # the only low finding cites no moment: nothing drawn


def test_legend_wraps_on_a_narrow_picture():
    root = parse(timeline_svg(hold_result(), width_px=300))
    assert int(root.get("width")) == 300
    legend_rows = {r.get("y") for r in root.find(f"{SVG}g").iter(f"{SVG}rect")}
    assert len(legend_rows) >= 3
    assert int(root.get("height")) > int(parse(timeline_svg(hold_result())).get("height"))


def test_hostile_text_is_escaped():
    result = hold_result(recording=HOSTILE)
    result.messages[0].text = HOSTILE
    result.findings[0].evidence = HOSTILE
    result.findings[0].rule = '"><script>x</script>'
    svg = timeline_svg(result)
    assert "<script>" not in svg
    root = parse(svg)
    titles = [t.text for t in root.iter(f"{SVG}title")]
    assert any(HOSTILE in title for title in titles)  # escaped on the wire, intact once parsed
    assert root.get("aria-label").startswith(f"Timeline of {HOSTILE}")


def test_empty_and_zero_length_results_still_draw():
    empty = hold_result(duration_s=0.0, segments=[], messages=[], findings=[])
    root = parse(timeline_svg(empty))
    assert [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "tick"] == ["0:00"]


def test_spans_past_the_stated_duration_stay_inside_the_picture():
    result = hold_result(duration_s=100.0)  # segments run to 2700 s
    for rect in parse(timeline_svg(result, width_px=500)).iter(f"{SVG}rect"):
        assert float(rect.get("x")) + float(rect.get("width")) <= 500


def test_tick_labels_never_crowd_a_narrow_picture():
    ticks = [float(t.get("x")) for t in parse(timeline_svg(hold_result(), width_px=400)).iter(f"{SVG}text")
             if t.get("class") == "tick"]
    assert len(ticks) >= 3
    assert min(b - a for a, b in zip(ticks, ticks[1:])) >= 60


def test_speech_without_a_message_gets_its_own_legend_entry():
    covered = [t.text for t in parse(timeline_svg(hold_result())).iter(f"{SVG}text")]
    assert "speech (no message)" not in covered
    result = hold_result(segments=hold_result().segments + [Span(2500.0, 2510.0, "speech")])
    assert "speech (no message)" in [t.text for t in parse(timeline_svg(result)).iter(f"{SVG}text")]
