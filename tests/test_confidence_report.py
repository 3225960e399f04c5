"""The report marks what Whisper was unsure of and shows what a product was heard as."""
import json

from app.core.audit import Context, Issue, Span, Word
from audits.classify import CatalogMessage
from audits.data import Transcript
from audits.pipeline import analyse
from audits.report import render

MISHEARD = "Up, brainstorm a brand new Galaxy S fan with today and get 50% off your first three months."
HEARD = "Upgrade to the brand new Galaxy S7 today and get 50% off your first three months."
THANKS = "Thank you for your patience. Your call is important to us."
DANA = Context(open_issues=[Issue("CASE-1042", "high", "Galaxy S7 reboots during calls")], owned_products=["Galaxy S7"])


def heard(text: str, unsure: dict[str, float] | None = None) -> tuple[Word, ...]:
    """The words of `text` as Whisper gives them: sure of each (0.95) but those in `unsure`."""
    return tuple(Word(word, (unsure or {}).get(word, 0.95)) for word in text.split())


def audited(promo_text: str, promo_logprob: float, catalog=(), promo_words=()):
    segments = [Span(0.0, 30.0, "music"), Span(30.0, 38.0, "speech"), Span(38.0, 60.0, "music"),
                Span(60.0, 66.0, "speech"), Span(66.0, 120.0, "music")]
    transcripts = [Transcript(30.0, 38.0, promo_text, avg_logprob=promo_logprob, words=promo_words),
                   Transcript(60.0, 66.0, THANKS, avg_logprob=-0.3, words=heard(THANKS))]
    return analyse("hold.wav", 120.0, segments, transcripts, DANA, catalog)


def test_a_product_matched_from_the_catalog_shows_what_was_heard_and_the_text_is_marked_unsure():
    catalog = [CatalogMessage(HEARD, ("Galaxy S7",))]
    result = audited(MISHEARD, -0.8, catalog)
    (promo,) = [m for m in result.messages if m.category == "promo"]
    assert promo.products == ["Galaxy S7"] and promo.avg_logprob == -0.8
    for fmt in ("md", "html"):
        report = render([result], fmt)
        assert "heard 'Galaxy S fan' → Galaxy S7" in report.replace("&#x27;", "'").replace("&#39;", "'")
        assert "(low confidence: avg log-probability -0.80)" in report
        assert report.count("low confidence") == 1  # the reassurance was heard surely
    html = render([result], "html")  # the misheard words marked in the text, as on the pages
    assert '<mark class="heard-as" title="heard as Galaxy S7">Galaxy S fan</mark>' in html
    assert html.count('<span class="low-confidence">') == 1


def test_a_sure_transcript_naming_its_product_is_shown_plain():
    report = render([audited(HEARD, -0.35)], "md")
    assert "low confidence" not in report and "heard '" not in report
    assert "| Galaxy S7 |" in report


def test_each_word_whisper_was_unsure_of_is_marked_in_every_format():
    catalog = [CatalogMessage(HEARD, ("Galaxy S7",))]
    result = audited(MISHEARD, -0.8, catalog, heard(MISHEARD, {"brainstorm": 0.31, "fan": 0.234}))
    md = render([result], "md")
    assert "Up, _brainstorm_ (?) a brand new Galaxy S _fan_ (?) with today" in md
    assert "_word_ (?): Whisper was less than 50 % sure of the word." in md
    html = render([result], "html")  # inside the misheard name's mark too
    assert ('<mark class="heard-as" title="heard as Galaxy S7">Galaxy S '
            '<mark class="unsure" title="heard with 23 % confidence">fan</mark></mark>') in html
    assert '<mark class="unsure" title="heard with 31 % confidence">brainstorm</mark>' in html
    assert html.count('<mark class="unsure"') == 3  # the two words and the legend's example
    promo, thanks = json.loads(render([result], "json"))["messages"]
    assert promo["low_confidence_words"] == [{"word": "brainstorm", "position": 1, "probability": 0.31},
                                             {"word": "fan", "position": 7, "probability": 0.234}]
    assert thanks["low_confidence_words"] == []  # every word heard surely


def test_a_transcript_heard_surely_word_by_word_has_no_word_marks():
    for fmt in ("md", "html"):
        report = render([audited(HEARD, -0.35, promo_words=heard(HEARD))], fmt)
        assert "(?)" not in report and 'class="unsure"' not in report


def test_a_product_read_from_the_text_says_no_list_vouches_for_its_spelling():
    """Without a catalog a promo's product is the name its text says ("Galaxy S1" for a Galaxy S9 base
    misheard): the reports say it is as heard, where a catalog or known name is shown plain."""
    result = audited("Meet the new Galaxy S1, trade in your old home and save 200 dollars per day.", -0.5)
    (promo,) = [m for m in result.messages if m.category == "promo"]
    assert promo.products == ["Galaxy S1"] and "read from the text" in promo.cue
    for fmt in ("md", "html"):
        assert "Galaxy S1 (as heard: no catalog or known name)" in render([result], fmt)
    assert json.loads(render([result], "json"))["messages"][0]["products"] == ["Galaxy S1"]  # unchanged
    report = render([audited(HEARD, -0.35)], "md")  # the caller's own product: a known name
    assert "| Galaxy S7 |" in report and "as heard" not in report
