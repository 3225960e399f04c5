"""The flow's scripts: a message heard again with the words the hold flow says it plays.

A hold flow knows the text of every message it plays (segments.say, audits.context.load_catalog). When
a message's first hearing reads like one of those scripts, the same play is heard again with the
script as Whisper's prompt (the text that came before): Whisper then spells what it hears as the
script does, "a network outing" becomes "a network outage", "for only aint it either month" becomes
"for only nine ninety-nine a month". The prompt is context, not the answer: where the audio says
something else Whisper mostly writes what it hears, but not always. On a promo that says "Galaxy S9"
where the flow's script says "Galaxy S7", Whisper given the script wrote "S7" on every voice of
tests/bench/accuracy.py - the caller's product, a finding invented. So the script hearing replaces the
first hearing only when it keeps every number and known product name the first hearing heard
(`keeps_what_was_heard`); otherwise the first hearing stands. Low-confidence words stay marked: a word
the script put in the text that the audio does not support scores low.

Measured in tests/bench/accuracy.py (base, the 60 generated clips, catalog vocabulary): word error
rate 0.328 -> 0.134, and on 48 clips whose audio differs from their script by a price, a model or a
number, no number of the script that the audio does not say reached a text.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable

from rapidfuzz import fuzz

from audits import classify
from audits.data import Transcript
from audits.messages import normalise

# A first hearing reads like a script when their normalised texts score at least this (rapidfuzz
# ratio, 0-100). Measured on base's first hearings of the 60 generated clips: the message's own script
# scored 71-100, any other script at most 47.
SCRIPT_MIN_RATIO = 60.0
# ... and the best script scores this much more than the next: two scripts that differ in a word (the
# same promo for a Galaxy S7 and for a Galaxy S9) tie on a hearing that missed that word, and the
# wrong one given as the prompt would be written in.
SCRIPT_MARGIN = 5.0


def distinct_scripts(catalog: Iterable[classify.CatalogMessage]) -> list[str]:
    """The flow's scripts, each once, in catalog order."""
    return list(dict.fromkeys(" ".join(entry.text.split()) for entry in catalog if entry.text.strip()))


def script_for(heard: str, scripts: list[str]) -> str | None:
    """The script a hearing reads like (SCRIPT_MIN_RATIO, SCRIPT_MARGIN ahead of the next), or None when
    none does or the hearing already says it word for word (nothing to hear again)."""
    text = normalise(heard)
    if not text or not scripts:
        return None
    scored = sorted(((fuzz.ratio(text, normalise(script)), script) for script in scripts), reverse=True)
    best_ratio, best = scored[0]
    runner_up = scored[1][0] if len(scored) > 1 else 0.0
    if best_ratio < SCRIPT_MIN_RATIO or best_ratio - runner_up < SCRIPT_MARGIN or text == normalise(best):
        return None
    return best


def keeps_what_was_heard(first: Transcript, scripted: Transcript, known_products: Iterable[str]) -> bool:
    """Whether the hearing made with a script keeps every number and known product the first hearing
    heard: what the script may change is how words are spelled and heard, never a price, a time or a
    model that the audio, heard without the script, says.

    A number the first hearing did not hear at all ("for only aint it either month") may come from the
    script. Such a word is shown as heard with low confidence when the audio does not support it: its
    probability is Whisper's alignment of the text to the audio without the prompt (audits.transcribe),
    and spelled-out numbers score low there ("nine" 0.0, "ninety" 0.0 where the audio says them; Whisper
    writes "$9.99"), so the report marks them for a reader to check."""
    if not normalise(scripted.text) or not _numbers(first.text) <= _numbers(scripted.text):
        return False
    return all(classify.mentions(scripted.text, product) for product in known_products
               if classify.mentions(first.text, product))


def _numbers(text: str) -> set[str]:
    """The numbers a text says, by value: "$200.00" and "two hundred dollars" are both "200"."""
    values = set()
    for word in normalise(text).split():
        if word[0].isdigit():
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
