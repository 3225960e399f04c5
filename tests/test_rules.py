"""Each rule fires where it should and stays silent where it should not (hand-built messages)."""
import pytest

from app.core.audit import Context, Issue, Message, Span
from audits.rules import clock, find, quote, silences, summarise

HOLD_S = 600.0
GALAXY = "Upgrade to the brand new Galaxy S7 today and get 50% off your first three months."
CUE = "promo cue: 'upgrade', 'brand new'"


def message(id, category, plays, text=GALAXY, every_s=100.0, length_s=9.0, products=(), start_s=10.0):
    starts = [start_s + i * every_s for i in range(plays)]
    return Message(id=id, text=text, play_times_s=starts, play_ends_s=[t + length_s for t in starts],
                   category=category, products=list(products), cue=CUE if category == "promo" else "")


def rules(findings):
    return [f.rule for f in findings]


def hold(*messages, segments=(), context=None, duration_s=HOLD_S):
    segments = list(segments) or [Span(0.0, duration_s, "music")]
    return find(list(messages), segments, duration_s, context)


DANA = Context(open_issues=[Issue("CASE-1042", "high", "Galaxy S7 reboots during calls")],
               owned_products=["Galaxy S7"])


@pytest.mark.parametrize("plays, severity", [(3, "low"), (4, "medium"), (5, "medium"), (6, "high"), (19, "high")])
def test_repeated_promo_severity_rises_with_plays(plays, severity):
    findings = hold(message("m1", "promo", plays, every_s=20.0, length_s=1.0))
    assert rules(findings) == ["repeated_promo"]
    finding = findings[0]
    assert (finding.severity, finding.count, finding.message_id) == (severity, plays, "m1")
    assert finding.at_s == [10.0 + i * 20.0 for i in range(plays)]
    assert f"promo m1 'Upgrade to the brand new Galaxy S7…' played {plays}×" in finding.evidence
    assert CUE in finding.evidence


def test_promos_heard_once_or_twice_by_a_caller_without_issues_or_products_are_fine():
    assert hold(message("m1", "promo", 2), message("m2", "promo", 1, text="Switch to Fiber.")) == []


def test_promo_during_open_issue_names_the_issue():
    findings = hold(message("m1", "promo", 1), context=Context(open_issues=DANA.open_issues))
    assert rules(findings) == ["promo_during_open_issue"]
    finding = findings[0]
    assert finding.severity == "high" and finding.count == 1 and finding.at_s == [10.0]
    assert finding.evidence.startswith(
        "promo m1 'Upgrade to the brand new Galaxy S7…' played 1× while CASE-1042 (high) is open")
    assert "Galaxy S7 reboots during calls" in finding.evidence


def test_promo_during_several_open_issues_takes_the_worst_severity():
    context = Context(open_issues=[Issue("CASE-1", "low"), Issue("CASE-2", "critical")])
    finding, = hold(message("m1", "promo", 1), context=context)
    assert finding.severity == "high"
    assert "CASE-1 (low), CASE-2 (critical) are open" in finding.evidence


def test_open_issue_does_not_flag_non_promos():
    assert hold(message("m1", "notice", 2), message("m2", "tip", 2), context=DANA) == []


def test_promo_for_owned_product_matches_names_loosely():
    promo = message("m1", "promo", 2, products=["galaxy s 7"])
    findings = hold(promo, context=Context(owned_products=["Galaxy S7"]))
    assert rules(findings) == ["promo_for_owned_product"]
    assert findings[0].severity == "medium"
    assert "sells galaxy s 7, which the caller already owns" in findings[0].evidence


def test_promo_for_another_product_is_not_flagged():
    promo = message("m1", "promo", 2, products=["Galaxy S8"])
    assert hold(promo, context=Context(owned_products=["Galaxy S7"])) == []


@pytest.mark.parametrize("plays, fired", [(3, False), (4, True)])
def test_repeated_reassurance_from_four_plays(plays, fired):
    findings = hold(message("m1", "reassurance", plays, text="Thank you for your patience."))
    assert rules(findings) == (["repeated_reassurance"] if fired else [])
    if fired:
        assert findings[0].severity == "low" and findings[0].count == 4


@pytest.mark.parametrize("played_s, fired, severity", [(90.0, False, None), (91.0, True, "medium"),
                                                       (200.0, True, "high")])
def test_promo_share_high_above_fifteen_percent(played_s, fired, severity):
    promo = message("m1", "promo", 2, length_s=played_s / 2)
    findings = hold(promo)
    assert rules(findings) == (["promo_share_high"] if fired else [])
    if fired:
        finding = findings[0]
        assert finding.severity == severity and finding.message_id is None
        assert finding.count == 2 and finding.at_s == [10.0, 110.0]
        assert "limit 15%" in finding.evidence


def test_all_rules_on_a_bad_hold():
    promo = message("m1", "promo", 6, every_s=90.0, length_s=9.0, products=["Galaxy S7"])
    thanks = message("m2", "reassurance", 4, text="Thank you for your patience.", start_s=50.0)
    segments = [Span(0.0, 200.0, "music"), Span(200.0, 245.0, "silence"), Span(245.0, 600.0, "music")]
    findings = hold(promo, thanks, segments=segments, context=DANA)
    assert rules(findings) == ["repeated_promo", "promo_during_open_issue", "promo_for_owned_product",
                               "repeated_reassurance", "long_silence"]
    share = summarise(segments, [promo, thanks], HOLD_S)["promo_share"]
    assert share == pytest.approx(54 / 600)


def seg(start_s, end_s, kind):
    return Span(start_s, end_s, kind)


def test_long_silence_inside_the_hold():
    segments = [seg(0, 100, "music"), seg(100, 131, "silence"), seg(131, 200, "speech")]
    finding, = hold(segments=segments)
    assert finding.rule == "long_silence" and finding.severity == "medium"
    assert finding.count == 1 and finding.at_s == [100]
    assert "31 s at 01:40–02:11" in finding.evidence


def test_silence_pieces_split_by_a_blip_are_one_silence():
    segments = [seg(0, 100, "music"), seg(100, 120, "silence"), seg(120.3, 150, "silence"),
                seg(150, 170, "music"), seg(170, 240, "silence"), seg(240, 250, "speech")]
    finding, = hold(segments=segments)
    assert finding.count == 2 and finding.severity == "high"
    assert [(s.start_s, s.end_s) for s in silences(segments)] == [(100, 150), (170, 240)]


def test_no_long_silence():
    segments = [seg(0, 29.9, "silence"), seg(29.9, 60, "music"), seg(60, 89.5, "silence"), seg(89.5, 100, "music")]
    assert hold(segments=segments) == []


def test_long_silence_at_the_edges_of_the_recording():
    # a caller hears dead air before the first music or after the last just as much (issue #13)
    segments = [seg(0, 45, "silence"), seg(45, 100, "music"), seg(100, 160, "silence")]
    finding, = hold(segments=segments)
    assert finding.rule == "long_silence" and finding.severity == "high"
    assert finding.count == 2 and finding.at_s == [0, 100]
    assert "45 s at 00:00–00:45" in finding.evidence and "60 s at 01:40–02:40" in finding.evidence


@pytest.mark.parametrize("duration_s", [7200.0, 10.0])
def test_a_recording_of_nothing_but_silence_is_dead_air(duration_s):
    finding, = find([], [seg(0, duration_s, "silence")], duration_s)
    assert (finding.rule, finding.severity, finding.count, finding.at_s) == ("dead_air", "high", 1, [0.0])
    assert f"whole {clock(duration_s)} recording" in finding.evidence and "no music and no speech" in finding.evidence


def test_an_empty_recording_is_not_dead_air():
    assert find([], [], 0.0) == []


def test_clean_hold_has_no_findings():
    notice = message("m1", "notice", 3, text="We are aware of an outage.")
    wait = message("m2", "wait", 5, text="You are number 3 in the queue.", start_s=40.0)
    tip = message("m3", "tip", 3, text="Did you know you can pay online?", start_s=70.0)
    assert hold(notice, wait, tip, context=DANA) == []


def test_summary_totals():
    segments = [seg(0, 10, "speech"), seg(10, 50, "music"), seg(50, 55, "silence"), seg(55, 60, "speech")]
    promo = message("m1", "promo", 1, length_s=10.0, start_s=0.0)
    assert summarise(segments, [promo], 60.0) == {
        "speech_s": 15.0, "music_s": 40.0, "silence_s": 5.0, "promo_s": 10.0, "promo_share": 0.1667}


@pytest.mark.parametrize("seconds, text", [(0, "00:00"), (70.4, "01:10"), (599.6, "10:00"), (3725, "1:02:05")])
def test_clock(seconds, text):
    assert clock(seconds) == text


def test_quote_cuts_at_a_word():
    assert quote("Short one.") == "'Short one.'"
    assert quote(GALAXY) == "'Upgrade to the brand new Galaxy S7…'"


def test_a_real_recording_of_line_noise_is_dead_air(tmp_path):
    """Issue #13: two minutes of dead air (line noise only, Twilio's 8 kHz mu-law) gave no finding."""
    import numpy as np
    import soundfile

    from audits.audio import load
    from audits.segment import split

    rate_hz = 8000
    noise = np.random.default_rng(13).normal(0.0, 10 ** (-62 / 20), 120 * rate_hz).astype(np.float32)
    path = tmp_path / "dead-air.wav"
    soundfile.write(str(path), noise, rate_hz, subtype="ULAW")
    audio = load(path)
    segments = split(audio)
    assert [f.rule for f in find([], segments, audio.duration_s)] == ["dead_air"]
