"""The pure policy, rule by rule: plain data in, a decision and its reason out."""
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from app.core.policy import FALLBACK_MUSIC_URL, Caller, CallSoFar, Issue, Play, QueueData, QueueSettings, Segment, decide, fallback_decision, severity_rank

from app.core.products import product_key

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
QUEUE = QueueSettings(name="support", music=("https://cdn.example.com/a.mp3", "https://cdn.example.com/b.mp3"),
                      music_chunk_s=45, promos_per_call_max=1, promo_share_max=0.10, promo_repeat_days=7,
                      reassurance_every_s=300, reassurance_per_call_max=2, wait_announce_every_s=180,
                      suppress_min_severity="low")
NO_ANNOUNCEMENTS = replace(QUEUE, wait_announce_every_s=0)
NOTICE = Segment("outage", "notice", 11, say="There is an outage.", queues=("support",),
                 active_from=NOW - timedelta(days=1), active_until=NOW + timedelta(days=1))
GALAXY = Segment("galaxy-upgrade", "promo", 9, say="Buy a Galaxy S7.", products=("Galaxy S7",))
FIBER = Segment("fiber-offer", "promo", 7, say="Get fiber.", products=("Fiber 1G",))
THANKS = Segment("thanks", "reassurance", 7, say="Thank you for waiting.")
TIP = Segment("tip-billing", "tip", 7, say="Pay online.")
CATALOG = (NOTICE, GALAXY, FIBER, THANKS, TIP)
NIA = Caller("+15555550102", "C-1003", "Nia")
DATA = QueueData(queue_time_s=0)


def call_of(*kinds_and_ids, start_s=0.0, last_position_told=None) -> CallSoFar:
    """A call that heard these (segment_id, kind, duration_s) in order, from `start_s` of hold."""
    plays, at_s = [], start_s
    for segment_id, kind, duration_s in kinds_and_ids:
        plays.append(Play(segment_id, kind, NOW - timedelta(seconds=600 - at_s), at_s, duration_s))
        at_s += duration_s
    return CallSoFar(tuple(plays), last_position_told)


def hold_s(call: CallSoFar) -> float:
    return sum(p.duration_s for p in call.plays)


MUSIC = ("music-1", "music", 45)
AFTER_MUSIC = call_of(("outage", "notice", 11), MUSIC, MUSIC)  # 101 s: a 9 s promo is 8% of the hold


def next_for(caller=NIA, call=AFTER_MUSIC, history=(), queue=NO_ANNOUNCEMENTS, catalog=CATALOG, data=None, now=NOW):
    data = data or QueueData(queue_time_s=hold_s(call))
    return decide(caller, call, history, queue, catalog, data, now)


# --- 1. notices first ---

def test_an_unheard_active_notice_comes_first():
    decision = next_for(call=CallSoFar())
    assert decision.segment.id == "outage"
    assert decision.reason == "notice outage: not yet heard this call"


def test_a_notice_plays_once_per_call():
    assert next_for(call=call_of(("outage", "notice", 11))).segment.kind == "music"


@pytest.mark.parametrize("notice", [
    replace(NOTICE, active_until=NOW),                          # window over
    replace(NOTICE, active_from=NOW + timedelta(minutes=1)),    # not yet
    replace(NOTICE, queues=("sales",)),                         # another queue
])
def test_inactive_or_other_queue_notices_do_not_play(notice):
    assert next_for(call=CallSoFar(), catalog=(notice, GALAXY)).segment.kind == "music"


def test_unknown_callers_hear_music_only_fail_closed():
    for call in (CallSoFar(), AFTER_MUSIC, call_of(MUSIC, MUSIC, MUSIC, MUSIC, MUSIC, MUSIC, MUSIC)):
        decision = next_for(caller=None, call=call, queue=QUEUE,
                            data=QueueData(queue_time_s=hold_s(call), avg_queue_time_s=240, position=3))
        assert decision.segment.kind == "music"
        assert decision.reason == "music only: unknown caller (fail closed)"


def test_time_comes_from_now_not_the_clock():
    later = NOW + timedelta(days=2)  # the notice window has ended by then
    assert next_for(call=CallSoFar(), now=later).segment.kind == "music"
    assert next_for(call=CallSoFar(), now=NOW) == next_for(call=CallSoFar(), now=NOW)


# --- spacing: music between spoken messages, promos only after some music ---

@pytest.mark.parametrize("last, words", [(("galaxy-upgrade", "promo", 9), "promo"), (("tip-billing", "tip", 7), "tip"),
                                         (("wait-announcement", "wait", 5), "wait announcement"),
                                         (("thanks", "reassurance", 7), "reassurance")])
def test_no_two_messages_back_to_back(last, words):
    decision = next_for(call=call_of(("outage", "notice", 11), MUSIC, last))
    assert decision.segment.kind == "music"
    assert decision.reason == f"music: a pause after the {words}"


def test_no_promo_before_any_music():
    decision = next_for(call=CallSoFar(), catalog=(GALAXY, FIBER, TIP))
    assert decision.segment.kind == "music"
    assert decision.reason == "music: the hold has just begun"


# --- 2. promos ---

def test_a_known_caller_without_issues_gets_a_promo_after_music():
    decision = next_for()
    assert decision.segment.id == "galaxy-upgrade"
    assert decision.reason.startswith("promo galaxy-upgrade: 1 of at most 1 this call")


def test_open_issue_at_threshold_suppresses_promos():
    dana = replace(NIA, open_issues=(Issue("CASE-1042", "high"),))
    decision = next_for(caller=dana, catalog=(GALAXY, FIBER))
    assert decision.segment.kind == "music"
    assert decision.reason == "music: promo skipped: open issue CASE-1042 (high)"


def test_open_issue_below_threshold_does_not_suppress():
    caller = replace(NIA, open_issues=(Issue("CASE-7", "low"),))
    assert next_for(caller=caller, queue=replace(NO_ANNOUNCEMENTS, suppress_min_severity="high")).segment.kind == "promo"
    assert next_for(caller=caller).segment.kind != "promo"  # threshold low: low suppresses


def test_the_worst_open_issue_is_named():
    caller = replace(NIA, open_issues=(Issue("CASE-1", "low"), Issue("CASE-2", "critical")))
    assert "open issue CASE-2 (critical)" in next_for(caller=caller, catalog=(GALAXY,)).reason


def test_an_unknown_severity_suppresses_fail_closed():
    assert severity_rank("urgent") > severity_rank("critical")
    caller = replace(NIA, open_issues=(Issue("CASE-9", "urgent"),))
    assert next_for(caller=caller, queue=replace(NO_ANNOUNCEMENTS, suppress_min_severity="critical"),
                    catalog=(GALAXY,)).segment.kind == "music"


def test_opted_out_caller_hears_no_promo():
    decision = next_for(caller=replace(NIA, marketing_opt_out=True), catalog=(GALAXY,))
    assert decision.reason == "music: promo skipped: caller opted out of marketing"


def test_unknown_caller_hears_no_promo():
    decision = next_for(caller=None, catalog=(GALAXY, FIBER))
    assert decision.segment.kind == "music"
    assert decision.reason == "music only: unknown caller (fail closed)"


@pytest.mark.parametrize("owned", ["Galaxy S7", "galaxy s7", "  GALAXY   S7 ", "GalaxyS7"])
def test_never_a_promo_for_a_product_the_caller_owns(owned):
    decision = next_for(caller=replace(NIA, products=(owned,)), catalog=(GALAXY,))
    assert decision.segment.kind == "music"
    assert decision.reason == f"music: promo galaxy-upgrade skipped: caller owns {owned}"


def test_an_owned_product_skips_only_its_promo():
    decision = next_for(caller=replace(NIA, products=("galaxy s7",)), catalog=(GALAXY, FIBER))
    assert decision.segment.id == "fiber-offer"
    assert "promo galaxy-upgrade skipped: caller owns galaxy s7" in decision.reason


def test_promos_per_call_max():
    call = call_of(("outage", "notice", 11), MUSIC, ("galaxy-upgrade", "promo", 9), MUSIC, MUSIC)
    decision = next_for(call=call, catalog=(GALAXY, FIBER))
    assert decision.segment.kind == "music"
    assert decision.reason == "music: promo cap reached (1 per call)"
    two_per_call = replace(NO_ANNOUNCEMENTS, promos_per_call_max=2)
    assert next_for(call=call, queue=two_per_call, catalog=(GALAXY, FIBER)).segment.id == "fiber-offer"


def test_a_promo_never_repeats_within_a_call():
    call = call_of(MUSIC, ("galaxy-upgrade", "promo", 9), *[MUSIC] * 10)
    decision = next_for(call=call, queue=replace(NO_ANNOUNCEMENTS, promos_per_call_max=5), catalog=(GALAXY,))
    assert decision.reason == "music: promo galaxy-upgrade skipped: already heard this call"


def test_promo_share_counts_the_candidate():
    # 45 s on hold: 9 / (45 + 9) = 17% > 10%; 7 s fiber: 7 / 52 = 13% > 10% too.
    call = call_of(MUSIC)
    decision = next_for(call=call, catalog=(GALAXY, FIBER))
    assert decision.segment.kind == "music"
    assert "promo galaxy-upgrade skipped: promo share would be 17% (max 10%)" in decision.reason
    # 80 s on hold: 9 / 89 = 10.1% is over, 7 / 87 = 8% is under: the shorter promo fits.
    call = call_of(("m", "music", 80))
    assert next_for(call=call, catalog=(GALAXY, FIBER)).segment.id == "fiber-offer"


def test_promo_share_uses_twilio_queue_time_when_given():
    call = call_of(MUSIC)
    assert next_for(call=call, catalog=(GALAXY,), data=QueueData(queue_time_s=200)).segment.id == "galaxy-upgrade"


def test_promo_repeat_days_across_calls():
    heard_2_days_ago = Play("galaxy-upgrade", "promo", NOW - timedelta(days=2), 100, 9)
    decision = next_for(history=(heard_2_days_ago,), catalog=(GALAXY,))
    assert decision.segment.kind == "music"
    assert decision.reason == "music: promo galaxy-upgrade skipped: heard 2.0 days ago (not replayed within 7 days)"
    heard_8_days_ago = heard_2_days_ago._replace(at=NOW - timedelta(days=8))
    assert next_for(history=(heard_8_days_ago,), catalog=(GALAXY,)).segment.id == "galaxy-upgrade"


# --- 3. reassurance and wait announcements ---

def test_reassurance_every_interval_up_to_the_cap():
    assert next_for(call=call_of(*[MUSIC] * 6), catalog=(THANKS,)).segment.kind == "music"  # 270 s < 300 s
    decision = next_for(call=call_of(*[MUSIC] * 7), catalog=(THANKS,))  # 315 s
    assert decision.segment.id == "thanks"
    assert decision.reason == "reassurance thanks: 5 min on hold (1 of at most 2 this call)"
    once = call_of(*[MUSIC] * 7, ("thanks", "reassurance", 7), *[MUSIC] * 6)  # 270 s since it began
    assert next_for(call=once, catalog=(THANKS,)).segment.kind == "music"
    once_later = call_of(*[MUSIC] * 7, ("thanks", "reassurance", 7), *[MUSIC] * 7)
    assert next_for(call=once_later, catalog=(THANKS,)).segment.id == "thanks"
    twice = call_of(*[MUSIC] * 7, ("thanks", "reassurance", 7), *[MUSIC] * 7, ("thanks", "reassurance", 7),
                    *[MUSIC] * 20)
    assert next_for(call=twice, catalog=(THANKS,)).segment.kind == "music"


def test_wait_announcement_speaks_position_and_average_wait():
    decision = next_for(queue=QUEUE, catalog=(), call=call_of(MUSIC),
                        data=QueueData(queue_time_s=45, avg_queue_time_s=240, position=3))
    assert decision.segment.kind == "wait"
    assert decision.segment.say == "You are number 3 in the queue. Callers are currently waiting about 4 minutes on average."
    assert decision.position_told == 3
    assert decision.reason == "wait announcement: position 3; average wait 240 s"


def test_wait_announcement_interval():
    announced = call_of(MUSIC, ("wait-announcement", "wait", 8), MUSIC, MUSIC)  # 143 s: 98 s since
    data = QueueData(queue_time_s=143, avg_queue_time_s=240, position=2)
    assert next_for(queue=QUEUE, catalog=(), call=announced, data=data).segment.kind == "music"
    data = replace(data, queue_time_s=45 + 180)
    assert next_for(queue=QUEUE, catalog=(), call=announced, data=data).segment.kind == "wait"


def test_never_announces_a_position_higher_than_last_told():
    call = call_of(MUSIC, last_position_told=2)
    decision = next_for(queue=QUEUE, catalog=(), call=call,
                        data=QueueData(queue_time_s=45, avg_queue_time_s=300, position=4))
    assert "number" not in decision.segment.say and "next in line" not in decision.segment.say
    assert decision.position_told is None
    assert "position 4 not spoken (last told 2)" in decision.reason


def test_never_a_wait_estimate_from_no_data():
    for avg_s in (None, 0):
        decision = next_for(queue=QUEUE, catalog=(), call=call_of(MUSIC),
                            data=QueueData(queue_time_s=45, avg_queue_time_s=avg_s, position=1))
        assert decision.segment.say == "You are next in line."
        assert "no wait estimate (no average wait data)" in decision.reason
    nothing_to_say = next_for(queue=QUEUE, catalog=(), call=call_of(MUSIC), data=QueueData(queue_time_s=45))
    assert nothing_to_say.segment.kind == "music"


def test_wait_announce_every_s_zero_means_never():
    decision = next_for(queue=NO_ANNOUNCEMENTS, catalog=(), call=call_of(MUSIC),
                        data=QueueData(queue_time_s=45, avg_queue_time_s=240, position=3))
    assert decision.segment.kind == "music"


# --- 4. tips and music ---

def test_tips_play_once_per_call_as_non_sales_content():
    opted_out = replace(NIA, marketing_opt_out=True)
    decision = next_for(caller=opted_out, catalog=(TIP, GALAXY))
    assert decision.segment.id == "tip-billing"
    assert decision.reason == ("tip tip-billing: not yet heard this call; "
                               "promo skipped: caller opted out of marketing")
    heard = call_of(MUSIC, ("tip-billing", "tip", 7), MUSIC)
    assert next_for(caller=opted_out, call=heard, catalog=(TIP,)).segment.kind == "music"


def test_music_rotates_the_queue_urls_in_chunks():
    urls = []
    call = CallSoFar()
    for _ in range(4):
        decision = next_for(call=call, catalog=())
        urls.append(decision.segment.play)
        assert decision.segment.duration_s == 45
        call = CallSoFar(call.plays + (Play(decision.segment.id, "music", NOW, hold_s(call), 45),))
    assert urls == [QUEUE.music[0], QUEUE.music[1], QUEUE.music[0], QUEUE.music[1]]


def test_music_segments_join_the_rotation():
    track = Segment("jazz", "music", 60, play="https://cdn.example.com/jazz.mp3")
    call = call_of(MUSIC, MUSIC)
    assert next_for(call=call, catalog=(track,)).segment.id == "jazz"


def test_fallback_is_music_only():
    decision = fallback_decision(None, "fallback music: database locked")
    assert (decision.segment.kind, decision.segment.play) == ("music", FALLBACK_MUSIC_URL)
    assert fallback_decision(QUEUE, "x").segment.play == QUEUE.music[0]


def test_product_key_ignores_case_and_spacing():
    assert product_key("Galaxy S7") == product_key(" galaxy  s7 ") == product_key("GALAXYS7")
    assert product_key("Galaxy S7") != product_key("Galaxy S8")


def test_promos_blocked_says_why_no_promo_can_play_at_all():
    from app.core.policy import promos_blocked
    assert promos_blocked(NIA, AFTER_MUSIC, QUEUE) == ""
    assert promos_blocked(None, AFTER_MUSIC, QUEUE) == "promo skipped: unknown caller"
    capped = call_of(MUSIC, ("galaxy-upgrade", "promo", 9))
    assert promos_blocked(NIA, capped, QUEUE) == "promo cap reached (1 per call)"
