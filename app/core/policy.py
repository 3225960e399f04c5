"""The hold policy: a pure function from what we know to the next thing a caller hears.

`decide()` reads no clock, no database, no network: the webhook (and `holdguard
simulate`, and the tests) hand it plain data and get back a `Decision` with a
reason a person can read. Everything else in holdguard feeds it or logs it.

The order of a hold, one answer per Twilio wait request:

1. Notices first: an active notice for this queue that this call has not heard
   plays before anything else (several notices play one after another).
2. Breathing space: after any spoken message the next answer is music, so
   messages never come back to back.
3. A wait announcement (position / average wait from Twilio's live queue data)
   when one is due: the first as soon as possible, then every
   `wait_announce_every_s`. A position higher than the one this call was last
   told is never spoken, nor a wait estimate without data (AvgQueueTime 0 or
   absent); with nothing honest to say there is no announcement.
4. Reassurance every `reassurance_every_s` of hold, at most
   `reassurance_per_call_max` per call.
5. A promo, only after some music, only for a known caller with no open issue
   at/above `suppress_min_severity` and no marketing opt-out, never for a
   product the caller owns, within `promos_per_call_max`, `promo_share_max`
   (promo seconds / hold seconds, the candidate included) and
   `promo_repeat_days` (across calls; within a call a promo never repeats).
6. A tip (non-sales content), each tip once per call, also after some music.
7. Otherwise music: the queue's music URLs (and catalog segments of kind
   music) in rotation, one chunk per answer; the reason says why nothing else
   played ("music: promo skipped: open issue CASE-1042 (high)").

An unknown caller (no customer on that number) fails closed: music only, as
when the database cannot be read. We cannot tell whether they are mid-issue,
so nothing at all is pitched or scripted at them.

Time-based rules measure hold time with Twilio's `QueueTime`, not the sum of
logged durations, so a music file longer than `music_chunk_s` (Twilio plays a
`<Play>` to its end) only delays the next decision; it never breaks a cap.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from app.core.products import NO_ALIASES, ProductNames

KINDS = ("music", "promo", "reassurance", "notice", "tip")
# The kind the policy makes up itself (not a catalog segment) for a spoken wait / position: the
# audit's category for the same message, so the play log, simulate, /live and audits share one name.
WAIT_KIND = "wait"
KIND_WORDS = {WAIT_KIND: "wait announcement"}  # a kind as a reason's words, where the kind alone is terse
SEVERITIES = ("low", "medium", "high", "critical")
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}

ANNOUNCEMENT_ID = "wait-announcement"
FALLBACK_MUSIC_ID = "fallback-music"
# Twilio's own public hold music: the answer when the catalog cannot be read at all.
FALLBACK_MUSIC_URL = "http://com.twilio.sounds.music.s3.amazonaws.com/MARKOVICHAMP-Borghestral.mp3"
FALLBACK_MUSIC_CHUNK_S = 45.0
SPOKEN_WORDS_PER_S = 2.5

# Why a promo did not play, stored in the play log's `cause` column (and `play_skips` per promo):
# a fixed set, so pages and Datasette filter on it instead of parsing the readable reason.
CAUSES = ("open_issue", "owned_product", "per_call_cap", "share_cap", "repeat_days", "heard_this_call",
          "opt_out", "unknown_caller", "no_promo", "fault")


@dataclass(frozen=True)
class QueueSettings:
    """One `[queue.NAME]` table of a hold flow."""
    name: str
    music: tuple[str, ...]
    music_chunk_s: float = 45.0
    promos_per_call_max: int = 1
    promo_share_max: float = 0.10
    promo_repeat_days: float = 7.0
    reassurance_every_s: float = 300.0
    reassurance_per_call_max: int = 2
    wait_announce_every_s: float = 180.0
    suppress_min_severity: str = "low"
    agent_whisper: bool = False  # /twilio/agent-whisper speaks what the caller heard (off: says nothing)


@dataclass(frozen=True)
class Segment:
    """Something that may be played: a catalog `[[segment]]`, a music chunk or an announcement."""
    id: str
    kind: str
    duration_s: float
    play: str | None = None
    say: str | None = None
    products: tuple[str, ...] = ()
    queues: tuple[str, ...] = ()  # empty: every queue
    active_from: datetime | None = None
    active_until: datetime | None = None

    def applies_to(self, queue_name: str) -> bool:
        return not self.queues or queue_name in self.queues

    def is_active(self, now: datetime) -> bool:
        return ((self.active_from is None or self.active_from <= now)
                and (self.active_until is None or now < self.active_until))


@dataclass(frozen=True)
class Issue:
    """An open customer issue (a CRM case); the audit's context uses the same shape."""
    id: str
    severity: str = "medium"
    summary: str = ""


@dataclass(frozen=True)
class Caller:
    """A known customer, as the CRM last told us."""
    phone_e164: str
    customer_id: str
    name: str = ""
    products: tuple[str, ...] = ()
    open_issues: tuple[Issue, ...] = ()
    marketing_opt_out: bool = False


class Play(NamedTuple):
    """One logged answer: what played, when (wall clock) and how far into the hold.

    A named tuple, not a dataclass: a wait request reads every play of its call.
    """
    segment_id: str
    kind: str
    at: datetime
    at_s: float
    duration_s: float


@dataclass(frozen=True)
class CallSoFar:
    """This call's state between wait requests (kept in SQLite by CallSid)."""
    plays: tuple[Play, ...] = ()
    last_position_told: int | None = None


@dataclass(frozen=True)
class QueueData:
    """Twilio's live wait parameters; None where Twilio sent nothing usable."""
    queue_time_s: float | None = None
    avg_queue_time_s: float | None = None
    position: int | None = None
    queue_size: int | None = None


class Skip(NamedTuple):
    """A promo that could have played and did not, and why (one of CAUSES)."""
    promo_id: str
    cause: str


@dataclass(frozen=True)
class Decision:
    segment: Segment
    reason: str  # for a person: "music: promo skipped: open issue CASE-1042 (high)"
    position_told: int | None = None  # set when an announcement speaks a position
    cause: str | None = None  # why no promo played, when one was considered (one of CAUSES)
    skipped: tuple[Skip, ...] = ()  # promos passed over for this answer


class Block(NamedTuple):
    """Why no promo at all may play: a cause (one of CAUSES) and the readable reason."""
    cause: str
    reason: str


def decide(caller: Caller | None, call: CallSoFar, history: tuple[Play, ...] | list[Play],
           queue: QueueSettings, catalog: tuple[Segment, ...] | list[Segment],
           queue_data: QueueData, now: datetime, products: ProductNames = NO_ALIASES) -> Decision:
    """The next segment for this caller, this call and this queue, with the reason.

    `caller` None means unknown: music only (fail closed). `history` holds the
    caller's plays in earlier calls (only promos matter). `catalog` may hold
    segments of other queues or outside their window: they are filtered here.
    `products` holds the hold flow's product aliases (see app.core.products).
    """
    segments = [s for s in catalog if s.applies_to(queue.name) and s.is_active(now)]
    if caller is None:
        return music_decision(queue, segments, call, "music only: unknown caller (fail closed)",
                              cause="unknown_caller")
    heard_ids = {p.segment_id for p in call.plays}
    hold_s = _hold_s(call, queue_data)

    for notice in _of_kind(segments, "notice"):
        if notice.id not in heard_ids:
            return Decision(notice, f"notice {notice.id}: not yet heard this call")

    last_play = call.plays[-1] if call.plays else None
    if last_play is not None and last_play.kind != "music":
        words = KIND_WORDS.get(last_play.kind, last_play.kind)
        return music_decision(queue, segments, call, f"music: a pause after the {words}")

    announcement = _wait_announcement(call, queue, queue_data, hold_s)
    if announcement is not None:
        return announcement

    reassurance = _reassurance(segments, call, queue, hold_s)
    if reassurance is not None:
        return reassurance

    if not any(p.kind == "music" for p in call.plays):
        return music_decision(queue, segments, call, "music: the hold has just begun")

    promo, no_promo = _promo(caller, segments, call, history, queue, hold_s, now, products)
    if promo is not None:
        return promo

    tip = next((t for t in _of_kind(segments, "tip") if t.id not in heard_ids), None)
    if tip is not None:
        return Decision(tip, f"tip {tip.id}: not yet heard this call; {no_promo.reason}",
                        cause=no_promo.cause, skipped=no_promo.skipped)
    return music_decision(queue, segments, call, f"music: {no_promo.reason}", cause=no_promo.cause,
                          skipped=no_promo.skipped)


class NoPromo(NamedTuple):
    cause: str
    reason: str
    skipped: tuple[Skip, ...] = ()


def music_decision(queue: QueueSettings | None, segments, call: CallSoFar, reason: str,
                   cause: str | None = None, skipped: tuple[Skip, ...] = ()) -> Decision:
    """The next music chunk in rotation (queue music URLs, then music segments).

    With no queue settings (catalog unreadable) it is Twilio's public hold music.
    """
    tracks = []
    if queue is not None:
        tracks = [Segment(f"music-{index + 1}", "music", queue.music_chunk_s, play=url)
                  for index, url in enumerate(queue.music)]
    tracks += _of_kind(segments, "music")
    if not tracks:
        tracks = [Segment(FALLBACK_MUSIC_ID, "music", FALLBACK_MUSIC_CHUNK_S, play=FALLBACK_MUSIC_URL)]
    music_plays = sum(1 for p in call.plays if p.kind == "music")
    return Decision(tracks[music_plays % len(tracks)], reason, cause=cause, skipped=skipped)


def fallback_decision(queue: QueueSettings | None, reason: str) -> Decision:
    """Music only, for when anything went wrong: never a message, never a promo."""
    return music_decision(queue, [], CallSoFar(), reason, cause="fault")


def severity_rank(severity: str) -> int:
    """low < medium < high < critical; an unknown severity ranks highest (fail closed)."""
    return SEVERITY_RANK.get(severity.strip().lower(), len(SEVERITIES))


def spoken_duration_s(text: str) -> float:
    """A rough length of `text` read by a text-to-speech voice."""
    return float(max(3, math.ceil(len(text.split()) / SPOKEN_WORDS_PER_S) + 1))


def _of_kind(segments, kind: str) -> list[Segment]:
    return [s for s in segments if s.kind == kind]


def _hold_s(call: CallSoFar, queue_data: QueueData) -> float:
    """Seconds on hold: Twilio's QueueTime, or the logged durations when Twilio sent none."""
    if queue_data.queue_time_s is not None:
        return queue_data.queue_time_s
    return sum(p.duration_s for p in call.plays)


def _since_last_s(call: CallSoFar, kind: str, hold_s: float) -> float | None:
    """Hold seconds since the last play of `kind` this call began; None if there was none."""
    starts = [p.at_s for p in call.plays if p.kind == kind]
    return hold_s - starts[-1] if starts else None


def _wait_announcement(call: CallSoFar, queue: QueueSettings, queue_data: QueueData,
                       hold_s: float) -> Decision | None:
    if queue.wait_announce_every_s <= 0:
        return None
    since_s = _since_last_s(call, WAIT_KIND, hold_s)
    if since_s is not None and since_s < queue.wait_announce_every_s:
        return None

    sentences, notes = [], []
    position, last_told = queue_data.position, call.last_position_told
    told = None
    if position is None or position < 1:
        notes.append("no position data")
    elif last_told is not None and position > last_told:
        notes.append(f"position {position} not spoken (last told {last_told})")
    else:
        told = position
        sentences.append("You are next in line." if position == 1
                         else f"You are number {position} in the queue.")
        notes.append(f"position {position}" + (f" (last told {last_told})" if last_told else ""))

    avg_s = queue_data.avg_queue_time_s
    if avg_s is None or avg_s <= 0:
        notes.append("no wait estimate (no average wait data)")
    else:
        minutes = round(avg_s / 60)
        sentences.append("Callers are currently waiting less than a minute on average." if minutes < 1
                         else f"Callers are currently waiting about {minutes} minute{'s' * (minutes != 1)} on average.")
        notes.append(f"average wait {avg_s:.0f} s")

    if not sentences:
        return None
    text = " ".join(sentences)
    segment = Segment(ANNOUNCEMENT_ID, WAIT_KIND, spoken_duration_s(text), say=text)
    return Decision(segment, "wait announcement: " + "; ".join(notes), position_told=told)


def _reassurance(segments, call: CallSoFar, queue: QueueSettings, hold_s: float) -> Decision | None:
    options = _of_kind(segments, "reassurance")
    heard = [p for p in call.plays if p.kind == "reassurance"]
    if not options or len(heard) >= queue.reassurance_per_call_max:
        return None
    since_s = _since_last_s(call, "reassurance", hold_s)
    if (hold_s if since_s is None else since_s) < queue.reassurance_every_s:
        return None
    # Rotate: the option this call heard least, in catalog order.
    counts = {s.id: sum(1 for p in heard if p.segment_id == s.id) for s in options}
    choice = min(options, key=lambda s: counts[s.id])
    return Decision(choice, f"reassurance {choice.id}: {hold_s / 60:.0f} min on hold "
                            f"({len(heard) + 1} of at most {queue.reassurance_per_call_max} this call)")


def _promo(caller, segments, call: CallSoFar, history, queue: QueueSettings, hold_s: float,
           now: datetime, products: ProductNames) -> tuple[Decision | None, NoPromo]:
    """The promo to play, or None and why no promo plays."""
    candidates = _of_kind(segments, "promo")
    if not candidates:
        return None, NoPromo("no_promo", "no promo for this queue right now")
    block = promo_block(caller, call, queue)
    if block is not None:
        return None, NoPromo(block.cause, block.reason)
    call_promos = [p for p in call.plays if p.kind == "promo"]
    owned = {products.key(p): p for p in caller.products}
    promo_s = sum(p.duration_s for p in call_promos)
    skipped, skip_texts = [], []
    for promo in candidates:
        why_not = (_owned_product(promo, owned, products)
                   or _recently_heard(promo, call, history, queue, now)
                   or _share_exceeded(promo, promo_s, hold_s, queue))
        if why_not:
            skipped.append(Skip(promo.id, why_not.cause))
            skip_texts.append(f"promo {promo.id} skipped: {why_not.reason}")
            continue
        share = (promo_s + promo.duration_s) / (hold_s + promo.duration_s)
        reason = (f"promo {promo.id}: {len(call_promos) + 1} of at most {queue.promos_per_call_max} "
                  f"this call, promo share {share:.0%} (max {queue.promo_share_max:.0%})")
        return Decision(promo, "; ".join([reason, *skip_texts]), skipped=tuple(skipped)), NoPromo("", "")
    return None, NoPromo(skipped[0].cause, "; ".join(skip_texts), tuple(skipped))


def promo_block(caller: Caller | None, call: CallSoFar, queue: QueueSettings) -> Block | None:
    """Why no promo at all may play for the rest of this answer; None if one may.

    Public so the webhook can skip reading the caller's promo history when it
    cannot matter (unknown caller, opt-out, open issue, this call's cap reached).
    """
    if caller is None:
        return Block("unknown_caller", "promo skipped: unknown caller")
    if caller.marketing_opt_out:
        return Block("opt_out", "promo skipped: caller opted out of marketing")
    threshold = severity_rank(queue.suppress_min_severity)
    blocking = [i for i in caller.open_issues if severity_rank(i.severity) >= threshold]
    if blocking:
        worst = max(blocking, key=lambda i: severity_rank(i.severity))
        return Block("open_issue", f"promo skipped: open issue {worst.id} ({worst.severity})")
    if sum(1 for p in call.plays if p.kind == "promo") >= queue.promos_per_call_max:
        return Block("per_call_cap", f"promo cap reached ({queue.promos_per_call_max} per call)")
    return None


def promos_blocked(caller: Caller | None, call: CallSoFar, queue: QueueSettings) -> str:
    """promo_block's readable reason ("" if a promo may play)."""
    block = promo_block(caller, call, queue)
    return block.reason if block else ""


def _owned_product(promo: Segment, owned: dict[str, str], products: ProductNames) -> Block | None:
    for product in promo.products:
        if products.key(product) in owned:
            return Block("owned_product", f"caller owns {owned[products.key(product)]}")
    return None


def _recently_heard(promo: Segment, call: CallSoFar, history, queue: QueueSettings,
                    now: datetime) -> Block | None:
    if any(p.segment_id == promo.id for p in call.plays):
        return Block("heard_this_call", "already heard this call")
    window = timedelta(days=queue.promo_repeat_days)
    heard = [p.at for p in history if p.segment_id == promo.id and now - p.at < window]
    if heard:
        days_ago = (now - max(heard)).total_seconds() / 86400
        return Block("repeat_days",
                     f"heard {days_ago:.1f} days ago (not replayed within {queue.promo_repeat_days:g} days)")
    return None


def _share_exceeded(promo: Segment, promo_s: float, hold_s: float, queue: QueueSettings) -> Block | None:
    share = (promo_s + promo.duration_s) / (hold_s + promo.duration_s)
    if share > queue.promo_share_max:
        return Block("share_cap", f"promo share would be {share:.0%} (max {queue.promo_share_max:.0%})")
    return None
