"""Give each message a category (promo, reassurance, wait, notice, tip, other) and its products.

Classification is a table of phrase cues with weights, read on the normalised
transcript (see audits.messages.normalise: lowercase, digits for numbers). A
category counts when its cues add up to at least its threshold. When several
count, PRECEDENCE decides: a message that sells anything is a promo even when
it also thanks the caller for their patience; a notice beats a wait
announcement, which beats a tip, which beats plain reassurance (the generic
courtesy words appear everywhere).

Weak promo words ("plan", "card", "save"...) score 1 and need a second cue, so
"save time with our app" stays a tip while "save 20 dollars" is a promo.
"""
from __future__ import annotations

import re
from dataclasses import replace

from audits.data import Category, Message
from audits.messages import normalise

NUMBER = r"\d[\d.]*"

# category -> [(cue regex on normalised text, weight)]; the regex's first words are the cue's name
CUES: dict[Category, list[tuple[str, int]]] = {
    "promo": [
        (r"\bupgrade", 2), (r"\bbrand new\b", 2), (r"\boffers?\b(?! (you )?(our|my) (sincere )?apolog)", 2), (r"\bdiscounts?\b", 2),
        (rf"\b({NUMBER} )?percent off\b", 2), (r"\bswitch to\b", 2),
        (rf"\bsave (up to )?({NUMBER}|hundreds|big)", 2), (r"\blimited time\b", 2),
        (r"\bask your agent (about|how)\b", 2), (r"\bsign up\b", 2), (r"\bspecial (offer|price|deal)", 2),
        (r"\bfree (month|months|trial|gift|phone)", 2), (r"\bapply (now|today)\b", 2),
        (r"\b(get|buy|try|order) (the|a|our) (brand )?new\b", 2), (rf"\b(only|just) {NUMBER} (dollars|a month)", 2),
        (r"\bdeals?\b", 1), (r"\bplans?\b", 1), (r"\bcards?\b", 1), (r"\bloans?\b", 1),
        (r"\bsave\b", 1), (r"\bnew\b", 1), (r"\bper month\b|\ba month\b", 1), (r"\brewards?\b", 1),
    ],
    "notice": [
        (r"\boutages?\b", 2), (r"\bservice (disruption|interruption)s?\b", 2), (r"\bweather\b", 2),
        (r"\bwe are aware of\b", 2), (r"\brestored\b", 2), (r"\bdisruptions?\b", 2),
        (r"\bengineers are working\b", 2), (r"\bmaintenance\b", 2), (r"\bclosed (on|for|due)\b", 2),
        (r"\bhigher than (normal|usual) call volumes?\b", 2), (r"\baffecting\b", 1),
    ],
    "wait": [
        (rf"\bnumber {NUMBER} in (the )?(queue|line)\b", 3), (r"\bestimated wait( time)?\b", 3),
        (rf"\b(wait|hold) time (is|of) (about |approximately |around )?{NUMBER}", 3),
        (r"\bcallers? ahead of you\b", 3), (r"\bposition in (the )?(queue|line)\b", 3),
        (rf"\b{NUMBER} minutes?\b", 1),
    ],
    "tip": [
        (r"\bdid you know( that)? you can\b", 3), (r"\bvisit our (website|site)\b", 2),
        (r"\bonline at\b", 2), (r"\b(our|the) app\b", 2), (r"\bdot com\b|\b\w+ com\b", 1),
        (r"\bself service\b", 2), (r"\bat any time\b", 1), (r"\bonline\b", 1),
    ],
    "reassurance": [
        (r"\byour call is (very )?important", 3), (r"\bthank you for (your )?(patience|waiting|holding)", 3),
        (r"\bwe appreciate your patience\b", 3),
        (r"\b(an agent|a representative|someone) will be with you (shortly|soon|in a moment)", 3),
        (r"\bplease (stay|continue to hold|hold)\b", 2), (r"\bnext available\b", 2),
    ],
}
THRESHOLDS: dict[Category, int] = {"promo": 2, "notice": 2, "wait": 3, "tip": 2, "reassurance": 2}
PRECEDENCE: list[Category] = ["promo", "notice", "wait", "tip", "reassurance"]

# Words that start capitalised phrases without being products.
NOT_PRODUCTS = {"i", "a", "an", "the", "our", "your", "you", "we", "ask", "get", "call", "today",
                "now", "and", "or", "for", "with", "to", "this", "that", "it", "if", "please", "thank",
                "january", "february", "march", "april", "may", "june", "july", "august", "september",
                "october", "november", "december", "monday", "tuesday", "wednesday", "thursday",
                "friday", "saturday", "sunday", "pm", "am", "us", "home"}
# A product name after "new", "the" or "to": capitalised words or words with digits (Galaxy S7, Fiber One Gig).
_PRODUCT_WORD = r"(?:[A-Z][\w+-]*|[a-z]+[A-Z][\w+-]*|\d[\w+-]*)"
PRODUCT_PHRASE = re.compile(rf"\b(?:new|the|to|our)\s+((?:{_PRODUCT_WORD})(?:\s+{_PRODUCT_WORD}){{0,3}})")


def cue_hits(normalised: str) -> dict[Category, list[tuple[int, str]]]:
    """For each category whose cues reach its threshold, the (weight, phrase) cues found, strongest first."""
    hits: dict[Category, list[tuple[int, str]]] = {}
    for category, cues in CUES.items():
        found = [(weight, match.group(0)) for pattern, weight in cues
                 for match in [re.search(pattern, normalised)] if match]
        if sum(weight for weight, _ in found) >= THRESHOLDS[category]:
            hits[category] = sorted(found, key=lambda cue: -cue[0])
    return hits


def choose_category(hits: dict[Category, list[tuple[int, str]]]) -> Category:
    """First matched category in PRECEDENCE; a promo made only of weak words ranks after all others."""
    def rank(category: Category) -> tuple[bool, int]:
        weak_promo = category == "promo" and all(weight == 1 for weight, _ in hits[category])
        return weak_promo, PRECEDENCE.index(category)

    return min(hits, key=rank, default="other")


def classify_text(text: str) -> tuple[Category, str]:
    """The category of one transcript and the cue that decided it, e.g. ("promo", "promo cue: 'upgrade'")."""
    hits = cue_hits(normalise(text))
    category = choose_category(hits)
    if category == "other":
        return "other", ""
    phrases: list[str] = []
    for _, phrase in hits[category]:  # 'save' adds nothing to 'save 20', nor 'offer' to 'special offer'
        if not any(phrase in shown for shown in phrases):
            phrases = [shown for shown in phrases if shown not in phrase] + [phrase]
    return category, f"{category} cue: " + ", ".join(f"'{phrase}'" for phrase in phrases[:4])


def product_pattern(product: str) -> re.Pattern:
    """A regex finding `product` in normalised text whatever its case and spacing.

    "iPhone" finds "i phone", "Galaxy S7" finds "galaxy s 7", and a final single
    letter may abbreviate a word: "Fiber 1G" finds "fiber 1 gig" ("Fiber One Gig").
    """
    words = normalise(product).split()
    if not words:
        return re.compile(r"(?!)")  # matches nothing
    chars = " ?".join(re.escape(char) for char in "".join(words))
    abbreviation = "[a-z]*" if len(words) > 1 and len(words[-1]) == 1 and words[-1].isalpha() else ""
    return re.compile(rf"\b{chars}{abbreviation}\b")


def mentions(text: str, product: str) -> bool:
    """Whether `text` names `product` (see product_pattern)."""
    return bool(product_pattern(product).search(normalise(text)))


def same_product(a: str, b: str) -> bool:
    """Whether two product names are one product, ignoring case, spacing and number words."""
    return normalise(a).replace(" ", "") == normalise(b).replace(" ", "")


def extract_products(text: str, known_products=()) -> list[str]:
    """Products a transcript names: known names (as spelled in the list), then capitalised names in the text."""
    found = [product for product in known_products if mentions(text, product)]
    for match in PRODUCT_PHRASE.finditer(text):
        words = match.group(1).split()
        while words and words[-1].lower().strip(".,;:!?") in NOT_PRODUCTS:
            words.pop()
        if not words or words[0].lower() in NOT_PRODUCTS:
            continue
        phrase = " ".join(words).strip(".,;:!?")
        if not any(mentions(phrase, known) or mentions(known, phrase) for known in found):
            found.append(phrase)
    return list(dict.fromkeys(found))


def classify_messages(messages: list[Message], known_products=()) -> list[Message]:
    """Each message with its category, cue and products (products only for promos)."""
    classified = []
    for message in messages:
        category, cue = classify_text(message.text)
        products = extract_products(message.text, known_products) if category == "promo" else []
        classified.append(replace(message, category=category, cue=cue, products=products))
    return classified
