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

A promo's products are those of the catalog message it plays, known names it says, or else names read
from its text ("the new iPhone 15"). A name read from the text is never taken for a known one it only
resembles: a Galaxy S9 promo heard "Galaxy S1" names a Galaxy S1, not the caller's Galaxy S7.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

from app.core.audit import Category, Message
from app.core.products import same_product
from audits.messages import normalise, same_message

NUMBER = r"\d[\d.]*"

# category -> [(cue regex on normalised text, weight)]; the regex's first words are the cue's name
CUES: dict[Category, list[tuple[str, int]]] = {
    "promo": [
        (r"\bupgrade", 2), (r"\bbrand new\b", 2), (r"\boffers?\b(?! (you )?(our|my) (sincere )?apolog)", 2), (r"\bdiscounts?\b", 2),
        (rf"\b({NUMBER} )?percent off\b", 2), (r"\bswitch to\b", 2),
        (rf"\bsav(e|es|ed|ing) (up to )?({NUMBER}|hundreds|big)", 2), (r"\blimited time\b", 2),
        (r"\bask your agent (about|how)\b", 2), (r"\bsign up\b", 2), (r"\bspecial (offer|price|deal)", 2),
        (r"\bfree (month|months|trial|gift|phone)", 2), (r"\bapply (now|today)\b", 2),
        (r"\b(meet|introducing|get|getting|buy|try|order) (the|a|our) (brand )?new\b", 2),
        (rf"\b(only|just) {NUMBER} (dollars|a month)", 2),
        # a price however it was heard: "for only 9 to 9 a month" ("nine ninety-nine" misheard)
        (r"\b(only|just)( \S+){1,4} (a|per) (month|year)\b", 2),
        # a price by the month with the selling words around it misheard: "claimed $20 a month" (an amount
        # saved is the save cue's)
        (rf"(?<!save )(?<!saved )\b{NUMBER} dollars (a|per) (month|year)\b", 2),
        # "trade in your old phone", heard "trading your old home" too
        (r"\btrade ins?\b|\btrad(e|es|ing)( in)? your old\b", 2),
        (r"\bdeals?\b", 1), (r"\bplans?\b", 1), (r"\bcards?\b", 1), (r"\bloans?\b", 1),
        (r"\bsav(e|es|ed|ing)\b", 1), (r"\bnew\b", 1), (r"\bper month\b|\ba month\b", 1), (r"\brewards?\b", 1),
        (r"\bfor (only|just)\b", 1), (r"\byour old (phone|device|handset)s?\b", 1),
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
        # "You are currently caller number 7", also misheard ("called a number ...", "calling a number")
        (rf"\b(you are|you re) (currently )?(caller )?number {NUMBER}\b", 3), (r"\bcaller number\b", 3),
        (rf"\b{NUMBER} (st|nd|rd|th) (caller|in (the )?(queue|line))\b", 3),
        (r"\byou (are|re) currently call\w*\b", 2), (r"\bwaiting to speak (with|to)\b", 1),
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
                "friday", "saturday", "sunday", "pm", "am", "us"}
# ...nor end them: "Fiber One Gig Home Internet" is sold as Fiber One Gig, but "Home Protection Plan" is a name.
NOT_LAST_IN_PRODUCTS = NOT_PRODUCTS | {"home"}
# A product name after "new", "the", "our" or "switch to" (not any "to": base heard "repairs to every device"
# as "repairs to En-Reven-Mitzen"): a capitalised word, then capitalised words or numbers (Galaxy S7, Fiber
# One Gig, iPhone 15).
_NAME_WORD = r"(?:[A-Z][\w+-]*|[a-z]+[A-Z][\w+-]*)"
_PRODUCT_WORD = rf"(?:{_NAME_WORD}|\d[\w+-]*)"
PRODUCT_PHRASE = re.compile(
    rf"\b(?i:new|the|our|(?:switch|upgrade|move|go) to)\s+({_NAME_WORD}(?:\s+{_PRODUCT_WORD}){{0,3}})")
# Whisper often writes a service's name in lower case ("the home protection plan"): after "new", "the" or
# "our", two or three words and then the kind of thing a hold line sells. One word before the kind is
# too often an adjective ("the right plan") to be taken for a name.
PRODUCT_KINDS = r"plan|card|loan|package|bundle|warranty|insurance|membership|internet"
KIND_PHRASE = re.compile(rf"\b(?:new|the|our)\s+((?:(?!new\b|brand\b)[a-z]+\s+){{2,3}}(?:{PRODUCT_KINDS}))\b")


@dataclass(frozen=True)
class CatalogMessage:
    """A message the hold flow plays (segments.say) and the products it sells (segments.products)."""
    text: str
    products: tuple[str, ...] = ()


def cue_hits(normalised: str) -> dict[Category, list[tuple[int, str]]]:
    """For each category whose cues reach its threshold, the (weight, phrase) cues found, strongest first."""
    hits: dict[Category, list[tuple[int, str]]] = {}
    for category in CUES:
        found = found_cues(category, normalised)
        if sum(weight for weight, _ in found) >= THRESHOLDS[category]:
            hits[category] = sorted(found, key=lambda cue: -cue[0])
    return hits


def found_cues(category: Category, normalised: str) -> list[tuple[int, str]]:
    """(weight, phrase) of each of `category`'s cues in the normalised text, in CUES order."""
    return [(weight, match.group(0)) for pattern, weight in CUES[category]
            for match in [re.search(pattern, normalised)] if match]


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


def extract_products(text: str, known_products=(), also_heard=(), found=()) -> list[str]:
    """Products a transcript names: `found` (already known), then known names (as spelled in the
    list), then names read from the text (names_in_text) that are none of those.

    Known names are also looked for in `also_heard`, other transcripts of the same message.
    """
    found = list(found)
    found += [product for product in known_products if not any(same_product(product, f) for f in found)
              and any(mentions(t, product) for t in [text, *also_heard])]
    for phrase in names_in_text(text):
        if not any(mentions(phrase, known) or mentions(known, phrase) for known in found):
            found.append(phrase)
    return list(dict.fromkeys(found))


def names_in_text(text: str) -> list[str]:
    """What reads as a product's name in a transcript, whether or not anyone knows it: a capitalised name
    after "new", "the", "our" or "switch to" ("the new iPhone 15", "switch to Fiber One Gig"), or words naming
    a kind of product after "new", "the" or "our" ("the home protection plan", shown "Home Protection Plan")."""
    names = []
    for match in PRODUCT_PHRASE.finditer(text):
        words = match.group(1).split()
        while words and words[-1].lower().strip(".,;:!?") in NOT_LAST_IN_PRODUCTS:
            words.pop()
        if words and words[0].lower() not in NOT_PRODUCTS:
            names.append(" ".join(words).strip(".,;:!?"))
    return list(dict.fromkeys(names + kinds_named(text)))


def kinds_named(text: str) -> list[str]:
    """Lower-case names of a kind of product (KIND_PHRASE), capitalised: "the home protection plan" ->
    "Home Protection Plan"."""
    names = []
    for match in KIND_PHRASE.finditer(text):
        words = match.group(1).split()
        if not any(word in NOT_PRODUCTS for word in words):
            names.append(" ".join(word.capitalize() for word in words))
    return names


# How a promo's cue names the products read from its text (classify_messages, products_read).
READ_FROM_TEXT = "read from the text (no catalog or known name): "


def products_read(cue: str) -> list[str]:
    """The products a message's cue says were read from its text, no list vouching for their spelling."""
    _, said, names = cue.partition(READ_FROM_TEXT)
    return names.split(", ") if said else []


def classify_messages(messages: list[Message], known_products=(), texts_heard: dict[str, list[str]] | None = None,
                      catalog: tuple[CatalogMessage, ...] | list[CatalogMessage] = ()) -> list[Message]:
    """Each message with its category, cue and products (products only for promos).

    The category comes from the representative text. Products come from, in order: the hold-flow
    catalog message it is a play of (`catalog`, matched like plays of one message); known names
    (`known_products`) in any transcript of the message (`texts_heard`: id -> texts), since one play
    may be heard "Galaxy S fan" where another was heard "Galaxy S7"; names read from the text
    (names_in_text), which the cue then says. A message with no strong promo cue is a promo when it
    names a product (one the catalog sells, or a kind of product: "the home protection plan") and has
    a weak one.
    """
    classified = []
    for message in messages:
        category, cue = classify_text(message.text)
        heard = [message.text, *(texts_heard or {}).get(message.id, ())]
        sold = catalog_products(heard, catalog)
        if sold and category != "promo":  # the flow plays it as a promo, whatever words were misheard
            category, cue = "promo", "promo: a play of the hold flow's promo for " + ", ".join(sold)
        elif category == "other" or (category == "promo" and _only_weak_promo_cues(message.text)):
            category, cue = (_names_a_product_on_sale(message.text, heard, catalog)
                             or _names_a_kind_of_product(message.text) or (category, cue))
        products = []
        if category == "promo":
            products = extract_products(message.text, known_products, heard, found=sold)
            read = [product for product in products if product not in sold and product not in known_products]
            if read:  # no list vouches for these: a reader should know they are Whisper's spelling
                cue += f"; {'products' if len(read) > 1 else 'product'} {READ_FROM_TEXT}{', '.join(read)}"
        classified.append(replace(message, category=category, cue=cue, products=products))
    return classified


def _names_a_product_on_sale(text: str, heard: list[str], catalog) -> tuple[Category, str] | None:
    """("promo", cue) when a transcript names a product the hold flow sells and the text has a selling
    word however weak ("plan", "a month"): the product stands for the strong cue misheard ("For only the
    high and high demand, the home protection plan ..." was tiny.en's "For only nine ninety-nine a month")."""
    on_sale = list(dict.fromkeys(p for entry in catalog for p in entry.products))
    named = [product for product in on_sale if any(mentions(t, product) for t in heard)]
    return _promo_naming(text, named, f"{', '.join(named)}, which the hold flow sells")


def _names_a_kind_of_product(text: str) -> tuple[Category, str] | None:
    """("promo", cue) when a transcript names a kind of product (kinds_named) and has a selling word however
    weak, with no catalog needed: base heard "For only nine ninety-nine a month, the Home Protection Plan"
    as "Or only I'm I'm dead either man, the home protection plan"."""
    return _promo_naming(text, kinds_named(text), "a product")


def _promo_naming(text: str, named: list[str], what: str) -> tuple[Category, str] | None:
    weak = [phrase for _, phrase in found_cues("promo", normalise(text))]
    if not named or not weak:
        return None
    return "promo", f"promo: names {what}; cue: " + ", ".join(f"'{phrase}'" for phrase in weak[:3])


def _only_weak_promo_cues(text: str) -> bool:
    return all(weight == 1 for weight, _ in found_cues("promo", normalise(text)))


def catalog_products(heard: list[str], catalog) -> list[str]:
    """Products of the catalog messages that any of these transcripts is a play of."""
    heard_normalised = [normalise(text) for text in heard]
    products: list[str] = []
    for entry in catalog:
        said = normalise(entry.text)
        if said and any(same_message(said, text) for text in heard_normalised):
            products += [p for p in entry.products if p not in products]
    return products
