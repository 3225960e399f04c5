"""The flow's scripts: a message heard again with the words the hold flow says it plays.

A hold flow knows the text of every message it plays (segments.say, audits.context.load_catalog). When
a message's first hearing reads like one of those scripts, the same play is heard again with the
script as Whisper's prompt (the text that came before): Whisper then spells what it hears as the
script does, "a network outing" becomes "a network outage". The prompt is context, not the answer:
where the audio says something else Whisper mostly writes what it hears, but not always. On a promo
that says "Galaxy S9" where the flow's script says "Galaxy S7", Whisper given the script wrote "S7" on
every voice of tests/bench/accuracy.py - the caller's product, a finding invented. So the script
hearing replaces the first hearing only when it keeps every number and known product name the first
hearing heard, and every number it adds is one the audio says (`keeps_what_was_heard`); otherwise the
first hearing stands.

Whether the audio says a number is asked of Whisper without the script (`judge_numbers`): the
scripted text is scored against the clip with that number and with each of its confusions (one digit
changed or dropped, a teen for its unit or its tens: "8" against "18", "80", "6", ...), and the number
stands only if it scores best. Scoring a given text needs no prompt, so the script cannot lean on it.
Where a number the first hearing heard in its place scores best, that number is put back as first
heard (`hearing_with_script`), and the script's other words stand: "For only 99.9 a month, the phone
protection plan comes and returns..." with its script reads "For only 99.9 a month, the Home Protection
Plan covers repairs...".

Measured in tests/bench/accuracy.py (base, the 60 generated clips, catalog vocabulary) and on 48 clips
whose audio differs from their script by a price, a model or a number: see README, Performance.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import NamedTuple

from rapidfuzz import fuzz
from rapidfuzz.distance import Levenshtein

from app.core.audit import Word, words_of
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


# A number the script's hearing adds stands when the clip scores the text with it this much higher (sum
# of token log-probabilities) than with any of its confusions. Measured on base (tests/bench/accuracy.py,
# 2026-11-30): of the numbers base's scripted hearings added, the 12 the audio does not say (drifted
# clips: S7 for S9, 8 for eighteen) all scored 3.4 or more below a rival; of the 49 it says, 39 scored
# best (by 0.03 to 5.5), most of the others under a near twin ("9.99" and "1.99"). Any margin above 0
# would lose right numbers with no wrong one left to stop.
CONFIRM_MARGIN = 0.0


class ScriptHearing(NamedTuple):
    """A play heard with its script as the prompt, and the numbers it adds that the audio confirms."""
    transcript: Transcript
    confirmed: frozenset[str] = frozenset()


def distinct_scripts(catalog: Iterable[classify.CatalogMessage]) -> list[str]:
    """The flow's scripts, each once, in catalog order."""
    return list(dict.fromkeys(" ".join(entry.text.split()) for entry in catalog if entry.text.strip()))


def script_for(heard: str, scripts: list[str], known_products: Iterable[str] = ()) -> str | None:
    """The script a hearing reads like (SCRIPT_MIN_RATIO, SCRIPT_MARGIN ahead of the next), or None when
    none does or the hearing says it but for SCRIPT_MIN_EDITS word (not worth hearing again) - unless
    that word is in a known product's name the script says and the hearing does not ("the phone
    protection plan" for "the Home Protection Plan")."""
    text = normalise(heard)
    if not text or not scripts:
        return None
    scored = sorted(((fuzz.ratio(text, normalise(script)), script) for script in scripts), reverse=True)
    best_ratio, best = scored[0]
    runner_up = scored[1][0] if len(scored) > 1 else 0.0
    if best_ratio < SCRIPT_MIN_RATIO or best_ratio - runner_up < SCRIPT_MARGIN:
        return None
    if Levenshtein.distance(text.split(), normalise(best).split()) > SCRIPT_MIN_EDITS:
        return best
    missed = any(classify.mentions(best, product) and not classify.mentions(heard, product)
                 for product in known_products)
    return best if missed else None


def keeps_what_was_heard(first: Transcript, scripted: Transcript, known_products: Iterable[str],
                         confirmed: frozenset[str] = frozenset()) -> bool:
    """Whether the hearing made with a script keeps every known product the first hearing named, and
    every number it heard (by value: "$200.00" is "two hundred dollars") unless the audio prefers the
    script's (`judge_numbers`): what the script may change is how words are spelled and heard,
    never a price, a time or a model the audio does not say.

    A number the scripted hearing adds must be `confirmed`; one it drops must have lost to them: "for
    only nineteen ninety-nine a month" first heard "... repaired to M-Ravenmite ..." (no number) was
    heard with the script "for only nine ninety-nine a month", the script's price over the audio's, which
    scoring tells apart; "For only 99.9 a month" heard as the script's "nine ninety-nine" is the script's
    price where the clip scores 9.99 over 99.9 and over every confusion of 9.99."""
    heard, said = _numbers(first.text), _numbers(scripted.text)
    added, dropped = said - heard, heard - said
    if not normalise(scripted.text) or not added <= confirmed or (dropped and not added):
        return False
    return all(classify.mentions(scripted.text, product) for product in known_products
               if classify.mentions(first.text, product))


class Judged(NamedTuple):
    """What the audio says of the numbers a scripted hearing adds to the first hearing."""
    confirmed: frozenset[str]  # by value: the audio says it
    heard_instead: dict[str, str]  # by value: the number the first hearing heard in its place, which the audio prefers


def judge_numbers(scripted: str, first: str, score: Callable[[list[str]], list[float] | None]) -> Judged:
    """The numbers (by value) a scripted hearing adds to the `first` hearing, judged by the audio:
    `score(texts)` (the engine's Transcriber.score on the play's clip) weighs the normalised scripted
    text against the same text with the number replaced by each of its `confusions` and by each number
    the first hearing heard and the scripted one dropped. The number is confirmed when it scores best
    by more than CONFIRM_MARGIN; when a number the first hearing heard scores best, it is heard
    instead. Nothing is scored when the scripted hearing adds no number."""
    heard, said = _numbers(first), _numbers(scripted)
    dropped = sorted(heard - said)
    words = normalise(scripted).split()
    confirmed, heard_instead = set(), {}
    for value in sorted(said - heard):
        places = {i for i, word in enumerate(words) if word[0].isdigit() and _value(word) == value}
        if not places:
            continue
        written = words[min(places)]
        rivals = list(dict.fromkeys([*confusions(written), *dropped]))
        texts = [" ".join(rival if i in places else word for i, word in enumerate(words))
                 for rival in [written, *rivals]]
        scores = score(texts)
        if not scores:
            continue
        best = max(range(len(rivals)), key=lambda k: scores[k + 1])
        if scores[0] - scores[best + 1] > CONFIRM_MARGIN:
            confirmed.add(value)
        elif _value(rivals[best]) in dropped:
            heard_instead[value] = _value(rivals[best])
    return Judged(frozenset(confirmed), heard_instead)


def hearing_with_script(first: Transcript, scripted: Transcript,
                        score: Callable[[list[str]], list[float] | None] | None) -> ScriptHearing:
    """A play's hearing with its script, its numbers judged by the audio (`judge_numbers`; none without a
    `score`): a number the audio prefers the first hearing's to is put back as first heard, so what the
    script mends elsewhere ("the phone protection plan" -> "the Home Protection Plan") is not lost with
    a price the voice said too fast ("For only 99.9 a month" stays)."""
    if score is None:
        return ScriptHearing(scripted)
    judged = judge_numbers(scripted.text, first.text, score)
    for said, heard in judged.heard_instead.items():
        scripted = put_back(scripted, first, said, heard)
    return ScriptHearing(scripted, judged.confirmed)


def put_back(scripted: Transcript, first: Transcript, said: str, heard: str) -> Transcript:
    """`scripted` with the words that say the number `said` replaced by the words of `first` that say
    `heard` ("get fifty percent off" and "get 60% off" -> "get 60% off"), the punctuation after them kept;
    unchanged when either is not found. Each word keeps the probability its hearing gave it."""
    tokens, first_tokens = scripted.text.split(), first.text.split()
    target, source = _number_span(tokens, said), _number_span(first_tokens, heard)
    if target is None or source is None:
        return scripted
    (start, end), (first_start, first_end) = target, source
    put = first_tokens[first_start:first_end]
    wanted = normalise(" ".join(put)).split()

    def as_heard(span: list[str]) -> list[str]:
        return [heard if _value(word) == said else word for word in normalise(" ".join(span)).split()]

    # what the first hearing wrote with its number ("60%": "60 percent") is not said twice
    replaced = as_heard(tokens[start:end])
    while end < len(tokens) and len(replaced) < len(wanted):
        longer = as_heard(tokens[start:end + 1])
        if longer != wanted[:len(longer)]:
            break
        replaced, end = longer, end + 1
    put[-1] = put[-1].rstrip(_TRAILING) + tokens[end - 1][len(tokens[end - 1].rstrip(_TRAILING)):]
    scripted_words = words_of(scripted.text, scripted.words)
    words = [*scripted_words[:start], *words_of(first.text, first.words)[first_start:first_end], *scripted_words[end:]]
    text_tokens = [*tokens[:start], *put, *tokens[end:]]
    kept = tuple(Word(token, word.probability) for token, word in zip(text_tokens, words) if word is not None)
    return replace(scripted, text=" ".join(text_tokens), words=kept if scripted.words else ())


_TRAILING = ",.;:!?"


def _number_span(tokens: list[str], value: str) -> tuple[int, int] | None:
    """The fewest tokens, first found, that say the number `value` and no other ("nine ninety-nine")."""
    for length in range(1, 5):
        for start in range(len(tokens) - length + 1):
            if _numbers(" ".join(tokens[start:start + length])) == {value}:
                return start, start + length
    return None


def confusions(number: str) -> list[str]:
    """What a voice saying `number` ("8", "19.99") may be heard as, written as it is: one digit of its
    whole part changed or dropped, a "1" before it or a "0" after it (eight, eighteen, eighty), a teen
    for its tens and the other way round (eighteen, eighty); the last digit of its cents changed."""
    whole, dot, cents = number.partition(".")
    found = {rival + dot + cents for rival in _whole_confusions(whole)}
    if cents:
        found |= {whole + dot + cents[:-1] + digit for digit in DIGITS}
    return sorted(found - {number}, key=lambda rival: (len(rival), rival))


DIGITS = "0123456789"


def _whole_confusions(whole: str) -> set[str]:
    changed = {whole[:i] + digit + whole[i + 1:] for i in range(len(whole)) for digit in DIGITS}
    dropped = {whole[:i] + whole[i + 1:] for i in range(len(whole))}
    found = changed | dropped | {"1" + whole, whole + "0"}
    if len(whole) == 2 and whole[0] == "1" and whole[1] != "0":
        found.add(whole[1] + "0")  # eighteen, eighty
    if len(whole) == 2 and whole[1] == "0" and whole[0] not in "01":
        found.add("1" + whole[0])  # eighty, eighteen
    return {rival for rival in found if rival and (rival == "0" or not rival.startswith("0"))}


def _numbers(text: str) -> set[str]:
    """The numbers a text says, by value: "$200.00" and "two hundred dollars" are both "200"."""
    return {_value(word) for word in numbers(normalise(text))}


def _value(word: str) -> str:
    """A normalised word's number by value ("200.00" -> "200"), or the word when it is none."""
    try:
        return f"{float(word):g}"
    except ValueError:  # "1.1.1.1": not one number, kept as heard
        return word


def heard_with(prompt: str | None, scripts: list[str]) -> str:
    """What a hearing was made with, for the message library (audits.library.HeardBy.vocabulary): the
    vocabulary prompt, and the flow's scripts by digest when there are any. An entry heard with other
    scripts is heard again."""
    if not scripts:
        return prompt or ""
    digest = hashlib.sha256("\n".join(scripts).encode()).hexdigest()[:12]
    return f"{prompt or ''} [flow scripts {digest}]".strip()
