"""The report marks what Whisper was unsure of and shows what a product was heard as."""
from app.core.audit import Context, Issue, Span
from audits.classify import CatalogMessage
from audits.data import Transcript
from audits.pipeline import analyse
from audits.report import render

MISHEARD = "Up, brainstorm a brand new Galaxy S fan with today and get 50% off your first three months."
HEARD = "Upgrade to the brand new Galaxy S7 today and get 50% off your first three months."
THANKS = "Thank you for your patience. Your call is important to us."
DANA = Context(open_issues=[Issue("CASE-1042", "high", "Galaxy S7 reboots during calls")], owned_products=["Galaxy S7"])


def audited(promo_text: str, promo_logprob: float, catalog=()):
    segments = [Span(0.0, 30.0, "music"), Span(30.0, 38.0, "speech"), Span(38.0, 60.0, "music"),
                Span(60.0, 66.0, "speech"), Span(66.0, 120.0, "music")]
    transcripts = [Transcript(30.0, 38.0, promo_text, avg_logprob=promo_logprob),
                   Transcript(60.0, 66.0, THANKS, avg_logprob=-0.3)]
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
