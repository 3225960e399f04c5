"""Numbers and money normalised before classification; wait/position announcements are `wait`, misheard too."""
import pytest

from app.core.audit import Message
from audits.classify import CatalogMessage, classify_messages, classify_text
from audits.messages import normalise, same_message


@pytest.mark.parametrize("spoken, written, number", [
    ("For only nine ninety-nine a month", "For only $9.99 a month", "9.99"),
    ("just twenty-nine ninety-five a month", "just $29.95 a month", "29.95"),
    ("save five fifty", "save $5.50", "5.50"),
])
def test_prices_said_the_short_way_read_as_written_ones(spoken, written, number):
    assert number in normalise(spoken).split() and number in normalise(written).split()


@pytest.mark.parametrize("text, expected", [
    ("for only nine ninety-nine a month", "for only 9.99 a month"),
    ("twenty nine ninety nine", "29.99"),
    ("one hundred and twenty five", "125"),  # not a price: the tens word follows "hundred"
    ("two thousand and five", "2005"),
    ("number four in line", "number 4 in line"),
    ("you are caller number seven", "you are caller number 7"),
    # numbers side by side are read apart: a unit after a unit, tens after tens (each was summed: "3 or 3")
    ("press one, two or three", "press 1 2 or 3"),
    ("caller number seven, nine minutes", "caller number 7 9 minutes"),
    ("twenty twenty", "20 20"),
    ("one hundred ten four", "110 4"),
    ("two thousand twenty four", "2024"),
    ("one hundred one", "101"),
])
def test_normalise_numbers(text, expected):
    assert normalise(text) == expected


def test_a_price_said_and_a_price_written_are_one_message_and_other_prices_are_not():
    said = normalise("Get the Home Protection Plan for only nine ninety-nine a month.")
    written = normalise("Get the Home Protection Plan for only $9.99 a month.")
    assert same_message(said, written)
    assert not same_message(said, normalise("Get the Home Protection Plan for only $19.99 a month."))


@pytest.mark.parametrize("heard", [
    "You are currently caller number seven, waiting to speak with a representative.",  # what was said
    # what tiny.en and base really wrote for it on generated telephone lines:
    "You are currently called a number of handmen, waiting to speak with a reprimand to live.",
    "You are currently calling a number of families waiting to speak with a representative.",
    "You are currently caller number and waiting to speak with a reprimand for this.",
    "You are currently called a Humber Fan Run, waiting to speak with a reprint and to think.",
    "You are the 5th caller in line.",
    "Your estimated wait time is about eight minutes. You are number four in line.",
])
def test_position_announcements_are_wait(heard):
    assert classify_text(heard)[0] == "wait"


@pytest.mark.parametrize("heard", [
    "Thank you for your patience. Your call is important to us and an agent will be with you shortly.",
    "Please stay on the line, you are currently on hold.",
    "We are currently experiencing higher than normal call volumes.",
])
def test_other_messages_are_not_wait(heard):
    assert classify_text(heard)[0] != "wait"


@pytest.mark.parametrize("heard", [
    "For only nine ninety-nine a month, the Home Protection Plan covers repairs to every device in your home.",
    # misheard prices: the shape "only ... a month" still sells
    "For only 9 to 9 a month, the home protection plan can repair and plan read in my video home.",
    "Trade in your old phone and get my phone 15 for only the high and high a month.",
])
def test_prices_sell_even_misheard(heard):
    assert classify_text(heard)[0] == "promo"


def test_a_play_of_a_catalog_promo_is_a_promo_of_its_product_whatever_its_cues():
    catalog = [CatalogMessage("The Home Protection Plan covers repairs to every device in your home.",
                              ("Home Protection Plan",))]
    heard = Message(id="m1", text="The home protection plan covers repairs to every device in your home.",
                    play_times_s=[10.0], play_ends_s=[15.0])
    assert classify_text(heard.text)[0] != "promo"  # no selling words at all
    (message,) = classify_messages([heard], catalog=catalog)
    assert message.category == "promo" and message.products == ["Home Protection Plan"]
    assert "hold flow's promo for Home Protection Plan" in message.cue


def test_a_misheard_promo_naming_a_product_on_sale_is_a_promo_and_a_courtesy_naming_one_is_not():
    catalog = [CatalogMessage("For only nine ninety-nine a month, the Home Protection Plan covers repairs to every "
                              "device in your home.", ("Home Protection Plan",))]
    # tiny.en's hearing of that promo: too far from the catalog text to match it, no strong cue left
    misheard = Message(id="m1", text="For only the high and high demand, the home protection plan can repair and do "
                                     "not read in mind in your home.", play_times_s=[0.0], play_ends_s=[8.0])
    courtesy = Message(id="m2", text="Thank you for your patience, Home Protection Plan members.",
                       play_times_s=[20.0], play_ends_s=[24.0])
    promo, thanks = classify_messages([misheard, courtesy], known_products=["Home Protection Plan"], catalog=catalog)
    assert promo.category == "promo" and promo.products == ["Home Protection Plan"]
    assert promo.cue.startswith("promo: names Home Protection Plan, which the hold flow sells")
    assert thanks.category == "reassurance"
