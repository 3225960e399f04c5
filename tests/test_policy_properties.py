"""The policy's promises, for any caller, history, catalog and queue data (hypothesis):

- no promo to a caller with an open issue at or above the queue's threshold, who owns the product
  (one product identity, aliases included), or who opted out; an unknown caller hears music only;
- over a whole generated call, never more promos than `promos_per_call_max` and never a promo
  share above `promo_share_max`, and no promo twice in one call.

The oracle here is written from the README's rules, not from policy.py's helpers.
"""
from dataclasses import replace
from datetime import datetime, timedelta, timezone

from hypothesis import given, settings, strategies as st

from app.core.policy import (KINDS, SEVERITIES, Caller, CallSoFar, Decision, Issue, Play, QueueData,
                             QueueSettings, Segment, decide)
from app.core.products import ProductNames, same_product

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
QUEUE_NAME = "support"
# Names that are one product in several spellings, aliases that join others, and strangers.
PRODUCT_NAMES = ("Galaxy S7", "galaxy s-7", "Galaxy S seven", "GalaxyS7", "S7", "Fiber 1G", "fiber-1g",
                 "Gigabit Fiber", "iPhone 15", "iphone fifteen", "Pixel 8", "Router X", "router-x", "")
# What a CRM may send as a severity: the four, in any case and spacing, and words it should not
# (an unknown severity must count as the highest: fail closed).
SEVERITY_TEXTS = (*SEVERITIES, "HIGH", " Medium ", "Critical", "urgent", "", "p1")

# Reproducible (the same examples every run) and for this module only: a loaded profile would
# change every other hypothesis test in the session.
PROPERTIES = settings(derandomize=True, database=None, deadline=None, max_examples=300)

products = st.sampled_from(PRODUCT_NAMES)
durations_s = st.floats(min_value=1.0, max_value=120.0, allow_nan=False)
moments = st.integers(min_value=-40 * 86400, max_value=40 * 86400).map(lambda s: NOW + timedelta(seconds=s))


@st.composite
def product_names(draw) -> ProductNames:
    return ProductNames.from_pairs(draw(st.lists(st.tuples(products, products), max_size=4)))


@st.composite
def callers(draw) -> Caller | None:
    if draw(st.sampled_from(("known", "known", "known", "unknown"))) == "unknown":
        return None
    issues = draw(st.lists(st.builds(Issue, st.sampled_from(("CASE-1", "CASE-2", "CASE-3")),
                                     st.sampled_from(SEVERITY_TEXTS)), max_size=2))
    return Caller("+15555550100", "C-1", "Dana", tuple(draw(st.lists(products, max_size=3))), tuple(issues),
                  draw(st.sampled_from((False, False, True))))


@st.composite
def queues(draw) -> QueueSettings:
    return QueueSettings(
        name=QUEUE_NAME,
        music=tuple(draw(st.lists(st.sampled_from(("https://cdn/a.mp3", "https://cdn/b.mp3")), max_size=2))),
        music_chunk_s=draw(st.sampled_from((10.0, 45.0, 120.0))),
        promos_per_call_max=draw(st.sampled_from((2, 1, 4, 0))),
        promo_share_max=draw(st.sampled_from((0.5, 0.1, 1.0, 0.05, 0.25, 0.0))),
        promo_repeat_days=draw(st.sampled_from((0.0, 1.0, 7.0, 30.0))),
        reassurance_every_s=draw(st.sampled_from((0.0, 60.0, 300.0))),
        reassurance_per_call_max=draw(st.sampled_from((0, 1, 3))),
        wait_announce_every_s=draw(st.sampled_from((0.0, 60.0, 180.0))),
        suppress_min_severity=draw(st.sampled_from(SEVERITIES[::-1])))


@st.composite
def segments(draw) -> Segment:
    kind = draw(st.sampled_from(KINDS + ("promo",) * 4 + ("music",) * 2))  # promos are what this is about
    window = draw(st.sampled_from(("always", "always", "now", "past", "future")))
    active_from, active_until = {"always": (None, None), "now": (NOW - timedelta(days=1), NOW + timedelta(days=1)),
                                 "past": (None, NOW - timedelta(days=1)), "future": (NOW + timedelta(days=1), None)}[window]
    return Segment(
        id=f"{kind}-{draw(st.integers(0, 5))}", kind=kind, duration_s=draw(durations_s),
        play="https://cdn/segment.mp3", products=tuple(draw(st.lists(products, max_size=2))) if kind == "promo" else (),
        queues=draw(st.sampled_from(((), (), (QUEUE_NAME,), ("billing",), ("billing", QUEUE_NAME)))),
        active_from=active_from, active_until=active_until)


@st.composite
def catalogs(draw) -> list[Segment]:
    """Any segments (ids unique, as `flows check` makes them), and a promo that may play here now."""
    promo = Segment("promo-now", "promo", draw(durations_s), play="https://cdn/promo.mp3",
                    products=tuple(draw(st.lists(products, min_size=1, max_size=2))))
    return draw(st.lists(segments(), max_size=8, unique_by=lambda segment: segment.id)) + [promo]


@st.composite
def plays(draw, ids=st.sampled_from([f"{kind}-{n}" for kind in KINDS for n in range(6)] + ["wait-announcement"])):
    segment_id = draw(ids)
    kind = "wait" if segment_id == "wait-announcement" else segment_id.rsplit("-", 1)[0]
    return Play(segment_id, kind, draw(moments), draw(st.floats(0, 3600, allow_nan=False)), draw(durations_s))


@st.composite
def calls_so_far(draw) -> CallSoFar:
    """A call's plays so far, most often ending in music (where a promo may come next)."""
    so_far = draw(st.lists(plays(), max_size=12))
    if draw(st.sampled_from((True, True, True, False))):
        so_far.append(Play("music-0", "music", NOW, draw(st.floats(0, 3600, allow_nan=False)), draw(durations_s)))
    return CallSoFar(tuple(so_far), draw(st.none() | st.integers(1, 50)))


queue_data = st.builds(QueueData, st.none() | st.floats(0, 7200, allow_nan=False),
                       st.none() | st.floats(-10, 3600, allow_nan=False), st.none() | st.integers(-1, 50),
                       st.none() | st.integers(0, 50))


def promo_must_not_play(caller: Caller | None, queue: QueueSettings, promo: Segment, names: ProductNames) -> str:
    """Why the README says this promo may not play to this caller ("" if nothing forbids it)."""
    if caller is None:
        return "is unknown"
    if caller.marketing_opt_out:
        return "opted out of marketing"
    order = {name: rank for rank, name in enumerate(SEVERITIES)}
    threshold = order[queue.suppress_min_severity]
    if any(order.get(issue.severity.strip().lower(), len(SEVERITIES)) >= threshold for issue in caller.open_issues):
        return "has an open issue at or above the threshold"
    if any(same_product(sold, owned, names) for sold in promo.products for owned in caller.products):
        return "owns the product"
    return ""


def check_safe(decision: Decision, caller, queue, names) -> None:
    segment = decision.segment
    if caller is None:
        assert segment.kind == "music", f"unknown caller heard {segment.kind}: {decision.reason}"
    if segment.kind == "promo":
        why = promo_must_not_play(caller, queue, segment, names)
        assert not why, f"promo {segment.id} played to a caller who {why}: {decision.reason}"
        assert segment.applies_to(QUEUE_NAME) and segment.is_active(NOW)


@PROPERTIES
@given(caller=callers(), call=calls_so_far(), history=st.lists(plays(), max_size=8), queue=queues(),
       catalog=catalogs(), data=queue_data, names=product_names(), at_promo_step=st.sampled_from((True, True, False)))
def test_no_promo_to_a_caller_it_must_not_reach_from_any_state(caller, call, history, queue, catalog, data, names,
                                                               at_promo_step):
    if at_promo_step:  # most often get past the steps before promos: notices heard, music just played, nothing due
        notices = tuple(Play(s.id, "notice", NOW, 0.0, s.duration_s) for s in catalog if s.kind == "notice")
        music = Play("music-0", "music", NOW, data.queue_time_s or 0.0, 45.0)
        call = CallSoFar(notices + call.plays + (music,), call.last_position_told)
        queue = replace(queue, wait_announce_every_s=0.0, reassurance_per_call_max=0)
    decision = decide(caller, call, tuple(history), queue, tuple(catalog), data, NOW, names)
    check_safe(decision, caller, queue, names)
    if decision.segment.kind == "promo":
        assert sum(p.kind == "promo" for p in call.plays) < queue.promos_per_call_max
        assert decision.segment.id not in {p.segment_id for p in call.plays}


@settings(PROPERTIES, max_examples=150)
@given(caller=callers(), history=st.lists(plays(), max_size=8), queue=queues(), catalog=catalogs(),
       names=product_names(), answers=st.integers(1, 80), avg_wait_s=st.none() | st.floats(0, 3600, allow_nan=False),
       positions=st.lists(st.integers(1, 30), min_size=1, max_size=80), start_s=st.floats(0, 600, allow_nan=False))
def test_caps_hold_over_a_whole_call(caller, history, queue, catalog, names, answers, avg_wait_s, positions, start_s):
    """One call answer by answer, as Twilio drives it: QueueTime grows by what each answer played."""
    call, hold_s, promo_s = CallSoFar(), start_s, 0.0
    for answer in range(answers):
        data = QueueData(queue_time_s=hold_s, avg_queue_time_s=avg_wait_s,
                         position=positions[answer % len(positions)], queue_size=30)
        decision = decide(caller, call, tuple(history), queue, tuple(catalog), data, NOW, names)
        check_safe(decision, caller, queue, names)
        segment = decision.segment
        if segment.kind == "promo":
            assert segment.id not in {p.segment_id for p in call.plays}, "a promo twice in one call"
            promo_s += segment.duration_s
        call = CallSoFar(call.plays + (Play(segment.id, segment.kind, NOW, hold_s, segment.duration_s),),
                         decision.position_told if decision.position_told is not None else call.last_position_told)
        hold_s += segment.duration_s
        promo_plays = sum(p.kind == "promo" for p in call.plays)
        assert promo_plays <= queue.promos_per_call_max
        assert promo_s <= queue.promo_share_max * hold_s + 1e-9, \
            f"promo share {promo_s / hold_s:.3f} over {queue.promo_share_max} after {answer + 1} answers"
