"""What a held caller heard, summed up: for the agent whisper (one short spoken line) and the live view.

Pure: the caller, this call's plays and the catalog in, plain data or text out;
no clock (the time comes in as `now`), no database, no Flask.

The whisper says, in this order and in at most WHISPER_MAX_S of speech: the
caller's name, their open issues with severity (worst first), the minutes waited,
the notices heard by name, the promos heard by product (or "No promotions"),
and how many reassurances they heard (nothing when none):

    "Dana Reyes. Open case 1042, high. Waited 45 minutes. Heard outage northeast notice.
     No promotions. 2 reassurances."

When that is too long to say in time, detail goes first: the reassurance
count, the issues beyond the worst, the notice names, the promo products, then
the notice and promo counts; never the name, the worst issue or the wait.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Mapping, Sequence

from app.core.policy import WAIT_KIND, Caller, Play, Segment, severity_rank
from app.core.products import NO_ALIASES, ProductNames

WHISPER_MAX_S = 12.0
# A slow text-to-speech voice, pauses included (tests check it against espeak-ng at 150 words a minute).
WHISPER_WORDS_PER_S = 2.2
SENTENCE_PAUSE_S = 0.35
# For a fault, a queue without the whisper's data, or anything unexpected: says nothing private.
GENERIC_WHISPER = "Caller from the hold queue. No hold details available."
UNKNOWN_CALLER_WHISPER = "Caller not in the customer records."

_SEPARATORS = re.compile(r"[-_]+")
_DIGITS = re.compile(r"\d")


@dataclass(frozen=True)
class HeardPromo:
    segment_id: str
    products: tuple[str, ...]  # what it sold (empty: a promo that names no product)
    owned: tuple[str, ...] = ()  # of those, what the caller owns


@dataclass(frozen=True)
class HeardSoFar:
    """What one call heard on hold, by what matters to the agent; ids in first-heard order."""
    notices: tuple[str, ...] = ()
    promos: tuple[HeardPromo, ...] = ()
    reassurances: int = 0
    waits: int = 0  # wait announcements
    tips: tuple[str, ...] = ()
    music_s: float = 0.0


def heard_so_far(plays: Sequence[Play], catalog: Iterable[Segment] | Mapping[str, Segment],
                 caller: Caller | None = None, products: ProductNames = NO_ALIASES) -> HeardSoFar:
    """Sum up a call's plays; `catalog` gives promos their products (a promo no longer in it: none)."""
    segments = catalog if isinstance(catalog, Mapping) else {segment.id: segment for segment in catalog}
    owned = {products.key(product): product for product in (caller.products if caller else ())}
    notices, tips, promos = [], [], []
    reassurances = waits = 0
    music_s = 0.0
    for play in plays:
        if play.kind == "notice" and play.segment_id not in notices:
            notices.append(play.segment_id)
        elif play.kind == "tip" and play.segment_id not in tips:
            tips.append(play.segment_id)
        elif play.kind == "promo" and play.segment_id not in {promo.segment_id for promo in promos}:
            sold = segments[play.segment_id].products if play.segment_id in segments else ()
            promos.append(HeardPromo(play.segment_id, tuple(sold),
                                     tuple(owned[products.key(p)] for p in sold if products.key(p) in owned)))
        elif play.kind == "reassurance":
            reassurances += 1
        elif play.kind == WAIT_KIND:
            waits += 1
        elif play.kind == "music":
            music_s += play.duration_s
    return HeardSoFar(tuple(notices), tuple(promos), reassurances, waits, tuple(tips), music_s)


def waited_s(plays: Sequence[Play], now: datetime, queue_time_s: float | None = None) -> float | None:
    """Seconds on hold: Twilio's QueueTime when given, else the last answer's QueueTime plus the time
    since it was asked for; None with neither."""
    if queue_time_s is not None and math.isfinite(queue_time_s) and queue_time_s >= 0:
        return queue_time_s
    if not plays:
        return None
    last = plays[-1]
    return max(0.0, last.at_s + (now - last.at).total_seconds())


def spoken(identifier: str) -> str:
    """An id as words to speak: "outage-northeast" -> "outage northeast"."""
    return _SEPARATORS.sub(" ", identifier).strip()


def spoken_s(text: str) -> float:
    """A cautious estimate of how long `text` takes to say; each digit counts as a word
    ("1042" is "one thousand forty two")."""
    words = sum(max(1, len(_DIGITS.findall(word)) + (1 if re.search(r"[^\W\d]", word) else 0))
                for word in text.split())
    sentences = text.count(".") + text.count(";")
    return words / WHISPER_WORDS_PER_S + SENTENCE_PAUSE_S * sentences


def _issue_words(issue_id: str) -> str:
    """ "CASE-1042" -> "1042" (said after "case"); any other id as words."""
    words = spoken(issue_id).split()
    if len(words) > 1 and words[0].casefold() in ("case", "cases"):
        words = words[1:]
    return " ".join(words)


def _and_list(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _minutes(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return "Waited under a minute."
    return f"Waited {minutes} minute{'s' * (minutes != 1)}."


def _issues_sentence(caller: Caller, shown_max: int) -> str:
    if not caller.open_issues:
        return "No open case."
    if shown_max == 0:
        return f"{len(caller.open_issues)} open case{'s' * (len(caller.open_issues) > 1)}."
    issues = sorted(caller.open_issues, key=lambda issue: -severity_rank(issue.severity))
    parts = [f"{_issue_words(issue.id)}, {issue.severity or 'no severity'}" for issue in issues[:shown_max]]
    more = len(issues) - len(parts)
    if more:
        parts.append(f"and {more} more")
    return f"Open case{'s' * (len(issues) > 1)} " + "; ".join(parts) + "."


def _notices_sentence(heard: HeardSoFar, detail: str) -> str:
    if not heard.notices or detail == "none":
        return ""
    if detail == "count":
        return f"Heard {len(heard.notices)} notice{'s' * (len(heard.notices) > 1)}."
    names = [spoken(notice) for notice in heard.notices]
    return f"Heard {names[0]} notice." if len(names) == 1 else f"Heard notices {_and_list(names)}."


def _promos_sentence(heard: HeardSoFar, detail: str) -> str:
    if detail == "none":
        return ""
    if not heard.promos:
        return "No promotions."
    if detail == "count":
        return f"Heard {len(heard.promos)} promotion{'s' * (len(heard.promos) > 1)}."
    labels = [_and_list(promo.products) if promo.products else spoken(promo.segment_id) for promo in heard.promos]
    sentence = (f"Heard promotion for {labels[0]}" if len(labels) == 1
                else f"Heard promotions for {_and_list(labels)}")
    return sentence + (", which they own." if any(promo.owned for promo in heard.promos) else ".")


def _reassurance_sentence(heard: HeardSoFar) -> str:
    if not heard.reassurances:
        return ""
    return f"{heard.reassurances} reassurance{'s' * (heard.reassurances > 1)}."


# From the most detail to the least: (issues named, notices, promos, reassurance count); "all" names
# them, "count" counts them, "none" leaves them out.
_DETAIL_LEVELS = [(3, "all", "all", True), (3, "all", "all", False), (2, "all", "all", False),
                  (1, "all", "all", False), (1, "count", "all", False), (1, "count", "count", False),
                  (1, "none", "count", False), (1, "none", "none", False), (0, "none", "none", False)]


def whisper_text(caller: Caller | None, plays: Sequence[Play], catalog: Iterable[Segment] | Mapping[str, Segment],
                 now: datetime, queue_time_s: float | None = None,
                 products: ProductNames = NO_ALIASES) -> str:
    """The line the agent hears before the caller is put through; at most WHISPER_MAX_S to say.

    `caller` None (no customer on the number): UNKNOWN_CALLER_WHISPER and the wait.
    """
    waited = waited_s(plays, now, queue_time_s)
    wait_sentence = _minutes(waited) if waited is not None else ""
    if caller is None:
        return " ".join(part for part in (UNKNOWN_CALLER_WHISPER, wait_sentence) if part)
    name = (caller.name or "").strip() or f"Customer {spoken(caller.customer_id)}"
    name_sentence = " ".join(name.split()[:4]).rstrip(".") + "."
    heard = heard_so_far(plays, catalog, caller, products)
    for issues_max, notices, promos, with_reassurances in _DETAIL_LEVELS:
        parts = [name_sentence, _issues_sentence(caller, issues_max), wait_sentence,
                 _notices_sentence(heard, notices), _promos_sentence(heard, promos),
                 _reassurance_sentence(heard) if with_reassurances else ""]
        text = " ".join(part for part in parts if part)
        if spoken_s(text) <= WHISPER_MAX_S:
            return text
    return " ".join(part for part in (name_sentence, wait_sentence) if part)
