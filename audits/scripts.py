"""The flow's scripts: a message heard again with the words the hold flow says it plays.

A hold flow knows the text of every message it plays (segments.say, audits.context.load_catalog). When
a message's first hearing reads like one of those scripts, the same play is heard again with the
script as Whisper's prompt (the text that came before): Whisper then spells what it hears as the
script does, "a network outing" becomes "a network outage". The prompt is context, not the answer:
where the audio says something else Whisper mostly writes what it hears, but not always. On a promo
that says "Galaxy S9" where the flow's script says "Galaxy S7", Whisper given the script wrote "S7" on
every voice of tests/bench/accuracy.py - the caller's product, a finding invented. So the script
hearing replaces the first hearing only when it says the same numbers and keeps every known product
name the first hearing heard (`keeps_what_was_heard`); otherwise the first hearing stands.

Measured in tests/bench/accuracy.py (base, the 60 generated clips, catalog vocabulary) and on 48 clips
whose audio differs from their script by a price, a model or a number: see README, Performance.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable

from rapidfuzz import fuzz
from rapidfuzz.distance import Levenshtein

from audits import classify
from audits.data import Transcript
from audits.messages import normalise, numbers

# A first hearing reads like a script when their normalised texts score at least this (rapidfuzz
# ratio, 0-100). Measured on base's first hearings of the 60 generated clips: the message's own script
# scored 71-100, any other script at most 47.
SCRIPT_MIN_RATIO = 60.0
# ... and the best script scores this much more than the next: two scripts that differ in a word (the
# same promo for a Galaxy S7 and for a Galaxy S9) tie on a hearing that missed that word, and the
# wrong one given as the prompt would be written in.
SCRIPT_MARGIN = 5.0
# A hearing this many words or fewer from its script is not heard again: a decoding costs 1.5-2 s of a
# cold audit (base, 2 cores; the 45-minute bench hold's audit is 7 s without scripts) to mend one word
# ("the agent" for "an agent"), and a one-word difference that is a number stays as heard anyway.
SCRIPT_MIN_EDITS = 1


def distinct_scripts(catalog: Iterable[classify.CatalogMessage]) -> list[str]:
    """The flow's scripts, each once, in catalog order."""
    return list(dict.fromkeys(" ".join(entry.text.split()) for entry in catalog if entry.text.strip()))


def script_for(heard: str, scripts: list[str]) -> str | None:
    """The script a hearing reads like (SCRIPT_MIN_RATIO, SCRIPT_MARGIN ahead of the next), or None when
    none does or the hearing says it but for SCRIPT_MIN_EDITS word (not worth hearing again)."""
    text = normalise(heard)
    if not text or not scripts:
        return None
    scored = sorted(((fuzz.ratio(text, normalise(script)), script) for script in scripts), reverse=True)
    best_ratio, best = scored[0]
    runner_up = scored[1][0] if len(scored) > 1 else 0.0
    if best_ratio < SCRIPT_MIN_RATIO or best_ratio - runner_up < SCRIPT_MARGIN:
        return None
    return best if Levenshtein.distance(text.split(), normalise(best).split()) > SCRIPT_MIN_EDITS else None


def keeps_what_was_heard(first: Transcript, scripted: Transcript, known_products: Iterable[str]) -> bool:
    """Whether the hearing made with a script says the same numbers as the first hearing (by value:
    "$200.00" is "two hundred dollars") and every known product the first heard: what the script may
    change is how words are spelled and heard, never a price, a time or a model.

    A number the first hearing did not hear at all is not taken from the script either: "for only
    nineteen ninety-nine a month" first heard "... repaired to M-Ravenmite ..." (no number) was heard
    with the script "for only nine ninety-nine a month", the script's price over the audio's. Where the
    first hearing missed a price, the report shows it missed, marked as unsure, rather than the flow's."""
    if not normalise(scripted.text) or _numbers(first.text) != _numbers(scripted.text):
        return False
    return all(classify.mentions(scripted.text, product) for product in known_products
               if classify.mentions(first.text, product))


def _numbers(text: str) -> set[str]:
    """The numbers a text says, by value: "$200.00" and "two hundred dollars" are both "200"."""
    values = set()
    for word in numbers(normalise(text)):
        try:
            values.add(f"{float(word):g}")
        except ValueError:  # "1.1.1.1": not one number, kept as heard
            values.add(word)
    return values


def heard_with(prompt: str | None, scripts: list[str]) -> str:
    """What a hearing was made with, for the message library (audits.library.HeardBy.vocabulary): the
    vocabulary prompt, and the flow's scripts by digest when there are any. An entry heard with other
    scripts is heard again."""
    if not scripts:
        return prompt or ""
    digest = hashlib.sha256("\n".join(scripts).encode()).hexdigest()[:12]
    return f"{prompt or ''} [flow scripts {digest}]".strip()
