"""Categories, cues and products of messages, on the demo flow's texts and their Whisper spellings."""
import pytest

from audits.classify import (CatalogMessage, classify_messages, classify_text, extract_products, mentions,
                              same_product)
from audits.rules import promo_for_owned_product
from app.core.audit import Context, Message


@pytest.mark.parametrize("text, category", [
    ("Upgrade to the brand new Galaxy S7 today and get 50% off your first three months. Ask your agent how.",
     "promo"),
    ("Switch to Fiber One Gig home internet and save twenty dollars a month for a year.", "promo"),
    ("Apply today for the Rewards Visa card with no annual fee.", "promo"),
    ("Ask your agent about our new personal loan rates.", "promo"),
    ("Get the new Pixel 9 today.", "promo"),
    ("Thank you for your patience. Your call is important to us and an agent will be with you shortly.",
     "reassurance"),
    ("We appreciate your patience.", "reassurance"),
    ("You are number 3 in the queue. The estimated wait time is 4 minutes.", "wait"),
    ("Your estimated wait time is about two minutes.", "wait"),
    ("We are aware of a network outage affecting customers in the Northeast. Engineers are working on it "
     "and expect service to be restored by 6 PM today.", "notice"),
    ("Due to severe weather some stores are closed today.", "notice"),
    ("Did you know you can view and pay your bill online at any time at example dot com slash billing?", "tip"),
    ("Save time: visit our website to track your order.", "tip"),
    ("Press one for billing.", "other"),
])
def test_category(text, category):
    assert classify_text(text)[0] == category


@pytest.mark.parametrize("text, category", [
    # Selling beats thanking: a courtesy line in front of an offer is still a promo.
    ("Thank you for your patience. Upgrade now to the Unlimited Plus plan.", "promo"),
    # A notice beats reassurance and a wait announcement.
    ("We are aware of an outage in your area. Thank you for your patience.", "notice"),
    ("Thank you for holding. You are number 2 in the queue.", "wait"),
    # Weak sales words alone do not make a promo: the notice wins.
    ("Our new plan is to have service restored tonight after the outage.", "notice"),
    ("We offer our apologies: service will be restored at 6 PM.", "notice"),
])
def test_precedence_when_several_categories_match(text, category):
    assert classify_text(text)[0] == category


def test_cue_names_the_words_that_decided():
    category, cue = classify_text("Upgrade to the brand new Galaxy S7 today and get 50% off.")
    assert category == "promo"
    assert cue.startswith("promo cue: 'upgrade', 'brand new'")
    assert classify_text("Press one for billing.") == ("other", "")


def test_cue_does_not_repeat_a_word_inside_a_longer_cue():
    assert classify_text("Switch to us and save 20 dollars a month.")[1] == \
        "promo cue: 'switch to', 'save 20', 'a month'"


@pytest.mark.parametrize("text, known, products", [
    ("Upgrade to the brand new Galaxy S7 today.", [], ["Galaxy S7"]),
    ("Switch to Fiber One Gig home internet.", [], ["Fiber One Gig"]),
    # Known names win, spelled as the caller's record spells them, whatever Whisper's spacing.
    ("Upgrade to the brand new Galaxy S 7 today.", ["galaxy s7"], ["galaxy s7"]),
    ("Switch to Fiber One Gig home internet.", ["Fiber 1G"], ["Fiber 1G"]),
    ("Get the new I phone 15.", ["iPhone"], ["iPhone"]),
    ("Ask about the Unlimited Plus plan.", [], ["Unlimited Plus"]),
    # No capitalised name after new/the/to: nothing invented.
    ("Upgrade your plan today and save.", [], []),
    ("Switch to Fiber One Gig. Call us today.", ["Surplus"], ["Fiber One Gig"]),
    ("Upgrade from the brand new Galaxy S fan 1 to 8 today.", [], ["Galaxy S"]),  # "to 8" is no product
])
def test_products(text, known, products):
    assert extract_products(text, known) == products


def test_product_names_match_whole_words_only():
    assert not mentions("a surplus of offers", "Plus")
    assert mentions("fiber one gig", "Fiber 1G")
    assert same_product("Galaxy S7", "galaxy s 7") and not same_product("Galaxy S7", "Galaxy S8")


def test_classify_messages_sets_category_cue_and_promo_products_only():
    promo = Message("m1", "Upgrade to the brand new Galaxy S7 today.", [0.0], [5.0])
    notice = Message("m2", "We are aware of an outage in the Northeast.", [10.0], [15.0])
    classified = classify_messages([promo, notice], known_products=["Galaxy S7"])
    assert [(m.id, m.category, m.products) for m in classified] == [
        ("m1", "promo", ["Galaxy S7"]), ("m2", "notice", [])]
    assert classified[0].cue.startswith("promo cue:") and classified[1].cue.startswith("notice cue:")
    assert promo.category == "other"  # inputs are not modified


def test_known_products_are_found_in_any_play_of_the_message():
    promo = Message("m1", "Great to have a brand new Galaxy S fan with today and get 50% off.", [0.0, 60.0], [8.0, 68.0])
    heard = {"m1": [promo.text, "Upgrade to the brand new Galaxy S7 today and get 50% off."]}
    assert classify_messages([promo], ["Galaxy S7"])[0].products == ["Galaxy S"]
    assert classify_messages([promo], ["Galaxy S7"], heard)[0].products == ["Galaxy S7"]


def test_catalog_names_the_products_of_a_message_it_plays():
    catalog = [CatalogMessage("Upgrade to the brand new Galaxy S7 today and get fifty percent off your first three "
                              "months. Ask your agent how.", ("Galaxy S7",)),
               CatalogMessage("Switch to Fiber One Gig home internet and save twenty dollars a month.", ("Fiber 1G",))]
    heard = Message("m1", "I'm James Turner, and I'm the new Galaxy S fan from today and get 50% off your first three "
                          "months off your agent's house.", [0.0], [8.0])
    assert classify_messages([heard])[0].products == ["Galaxy S"]
    assert classify_messages([heard], catalog=catalog)[0].products == ["Galaxy S7"]
    other = Message("m2", "Get the new Pixel 9 today.", [9.0], [12.0])
    assert classify_messages([other], catalog=catalog)[0].products == ["Pixel 9"]


# ---------------------------------------------------------------- Whisper base's near-misses, no catalog
# What base (float32) wrote for tests/bench/accuracy.py's promos on generated 8 kHz telephone holds.

@pytest.mark.parametrize("heard", [
    "Meet the new Galaxy S9, trade in your old phone and pay $200 per day.",
    "trade in your old phone and get my phone 15 for only I'm with either man",
    "Trading your old home and getting a new iPhone 15 for only the I'm the I'm the I'm a month",
    "For only I'm I'm dead either month, the home protection plan comes and repairs to every demise in your home.",
    "which the fiber won big foam internet and claimed $20 a month or a year.",
    "which could have either won big home internet and saved $20 a month or a year.",
])
def test_near_miss_hearings_of_promos_still_sell(heard):
    assert classify_text(heard)[0] == "promo"


def test_a_promo_naming_a_kind_of_product_is_a_promo_without_a_catalog():
    heard = Message("m1", "Or only I'm I'm dead either man, the home protection plan can be repaired and re-mit in "
                          "your home.", [0.0], [6.0])
    assert classify_text(heard.text)[0] == "other"  # no strong cue left
    (promo,) = classify_messages([heard], known_products=["Galaxy S7"])
    assert promo.category == "promo" and promo.products == ["Home Protection Plan"]
    assert promo.cue.startswith("promo: names a product; cue: 'plan'")


@pytest.mark.parametrize("text, products", [
    ("Trade in your old phone and get the new iPhone 15 for only nine ninety-nine a month.", ["iPhone 15"]),
    ("For only nine ninety-nine a month, the Home Protection Plan covers repairs to every device in your home.",
     ["Home Protection Plan"]),
    ("For only 99.9 a month, the home protection plan comes and returns to every device in your home.",
     ["Home Protection Plan"]),
    ("Meet the new Galaxy S9, trade in your old phone and pay $200 per day.", ["Galaxy S9"]),
    ("Switch to Fiber One Gig home internet and save twenty dollars a month.", ["Fiber One Gig"]),
    ("Switch to the right plan for you and save 20 dollars.", []),  # an adjective, not a name
])
def test_a_promo_names_its_product_from_its_text_without_a_catalog(text, products):
    (promo,) = classify_messages([Message("m1", text, [0.0], [6.0])], known_products=["Galaxy S7"])
    assert promo.category == "promo" and promo.products == products
    if products:  # the reader is told no list vouches for the name
        assert promo.cue.endswith(f"; product read from the text (no catalog or known name): {products[0]}")


S9_CATALOG = [CatalogMessage("Meet the new Galaxy S9. Trade in your old phone and save two hundred dollars today.",
                             ("Galaxy S9",)),
              CatalogMessage("Upgrade to the brand new Galaxy S7 today and get fifty percent off your first three "
                             "months. Ask your agent how.", ("Galaxy S7",))]


@pytest.mark.parametrize("heard", [
    "Meet the new Galaxy S9, trade in your old phone and pay $200 per day.",
    "Meet the new Galaxy S1, trade in your old home and save 200 dollars per day.",
    "Meet the new Galaxy S9, to make in your own phone and gain 200 dollars today.",
    "Meet the new Galaxy S fan, trade in your old phone and save $200 today.",  # as tiny.en hears "S7" at times
])
@pytest.mark.parametrize("catalog", [[], S9_CATALOG], ids=["no catalog", "catalog"])
def test_a_galaxy_s9_promo_is_never_the_owned_galaxy_s7(heard, catalog):
    owner = Context(owned_products=["Galaxy S7"])
    (promo,) = classify_messages([Message("m1", heard, [0.0], [6.0])], ["Galaxy S7"], catalog=catalog)
    assert promo.category == "promo"
    assert not any(same_product(product, "Galaxy S7") for product in promo.products)
    assert promo_for_owned_product([promo], owner) == []


@pytest.mark.parametrize("heard", [
    "Thank you for your patience. Your call is important to us and an agent will be with you shortly.",
    "You are currently caller number seven, waiting to speak with a representative.",
    "You are currently called a number, haven't, waiting to speak with a reprimand to bid.",
    "Your estimated weight time is about 8 minutes. You are number 4 in line.",
    "We are aware of a network outage affecting customers in the Northeast. Engineers are working on it and "
    "expect service to be restored by 6 PM today.",
    "We are aware of a network out in affecting customers in the northeast, and in here are working on it and "
    "expect service to be restored by big steam today.",
    "Did you know you can view and pay your bill online at any time at example.com slash billing?",
    "Did you know you can use and pay your real online at any time at biglumple.com slash railing?",
    "If you know you can use and pay your real online a very time event member not come flash willing",
])
@pytest.mark.parametrize("catalog", [[], S9_CATALOG], ids=["no catalog", "catalog"])
def test_messages_that_sell_nothing_get_no_product(heard, catalog):
    (message,) = classify_messages([Message("m1", heard, [0.0], [6.0])], ["Galaxy S7"], catalog=catalog)
    assert message.category != "promo" and message.products == []
