"""Grouping plays into messages, on transcripts shaped like Whisper's real output."""
import pytest

from audits.data import Transcript
from audits.messages import group, normalise, same_message, texts_heard

GALAXY = "Upgrade to the brand new Galaxy S7 today and get 50% off your first three months. Ask your agent how."
# How Whisper wrote the same promo when re-recorded by another voice at another pace.
GALAXY_OTHER_VOICE = "Upgrade to the brand-new Galaxy S 7 today and get fifty percent off your first 3 months, ask your agent now."
GALAXY_MISHEARD = "Upgrade to the brand new galaxy as seven today and get 50% of your first three months. Ask you are agent how."
GALAXY_CUT_SHORT = "Upgrade to the brand new Galaxy S7 today and get 50% off your first three"
FIBER = "Upgrade today: switch to Fiber One Gig home internet and save twenty dollars a month for a year."
GALAXY_TODAY = "Upgrade today to the brand new Galaxy S7 and get fifty percent off."
THANKS_LONG = "Thank you for your patience. Your call is important to us and an agent will be with you shortly."
THANKS_SHORT = "Thank you for your patience."


def plays(*texts, every_s=60.0, length_s=8.0):
    return [Transcript(start_s=i * every_s, end_s=i * every_s + length_s, text=text) for i, text in enumerate(texts)]


@pytest.mark.parametrize("text, expected", [
    ("Get 50% off the Galaxy S7!", "get 50 percent off the galaxy s 7"),
    ("save twenty dollars", "save 20 dollars"),
    ("one hundred and twenty five", "125"),
    ("only $4.99 a month", "only 4.99 dollars a month"),
    ("You're number three in the queue.", "you re number 3 in the queue"),
    ("", ""),
])
def test_normalise(text, expected):
    assert normalise(text) == expected


@pytest.mark.parametrize("other", [GALAXY_OTHER_VOICE, GALAXY_MISHEARD, GALAXY_CUT_SHORT])
def test_variants_of_one_recording_are_the_same_message(other):
    assert same_message(normalise(GALAXY), normalise(other))


# What Whisper tiny.en really wrote for plays of the demo promo on a generated 8 kHz mu-law line
# (tests/test_audit_e2e.py's bad hold): the second is the re-recording (en-gb-x-rp, 130 wpm), ratio 77.
WHISPER_PLAYS = [
    "Up, break from the brand new Galaxy S fan 1 to 8, and get 50% off your first 3 months. Ask your agent how.",
    "I'm James Turner, and I'm the new Galaxy S fan from today and get 50% off your first three months off your "
    "agent's house.",
    "I'm brave to my brand new Galaxy S Pen one to me and get 50% off your first three months off your agent's house.",
    "Great to come up with a brand new Galaxy S fan with today and get 50% off your first three months after your "
    "agent's house.",
]


@pytest.mark.parametrize("other", WHISPER_PLAYS[1:])
def test_real_whisper_plays_of_one_promo_are_the_same_message(other):
    assert same_message(normalise(WHISPER_PLAYS[0]), normalise(other))


def test_real_whisper_plays_of_two_promos_sharing_words_stay_apart():
    assert not same_message(normalise("Uprange to date on a brand new Galaxy S family and get 50% off."),
                            normalise("Up range to native high, we're one big home internet and save $20 a month."))


@pytest.mark.parametrize("a, b", [
    (GALAXY_TODAY, FIBER),  # share "upgrade today"
    (THANKS_LONG, THANKS_SHORT),  # one's words inside the other's, but a different, shorter recording
    ("You are number three in the queue.", "You are number two in the queue."),
    ("Get 50% off your first month.", "Get 15% off your first month."),
])
def test_different_messages_stay_apart(a, b):
    assert not same_message(normalise(a), normalise(b))


def test_group_numbers_messages_in_order_of_first_play_with_every_play():
    messages = group(plays(FIBER, GALAXY, FIBER, GALAXY_OTHER_VOICE, GALAXY, THANKS_LONG))
    assert [m.id for m in messages] == ["m1", "m2", "m3"]
    fiber, galaxy, thanks = messages
    assert fiber.play_times_s == [0.0, 120.0] and fiber.play_ends_s == [8.0, 128.0]
    assert galaxy.play_times_s == [60.0, 180.0, 240.0]
    assert galaxy.text == GALAXY  # the most common transcript represents the message
    assert thanks.plays == 1


def test_group_sorts_plays_by_time_whatever_the_input_order():
    messages = group(list(reversed(plays(GALAXY, FIBER, GALAXY))))
    assert [m.text for m in messages] == [GALAXY, FIBER]
    assert messages[0].play_times_s == [0.0, 120.0]


def test_rejected_hallucinations_are_not_messages():
    messages = group(plays("", GALAXY, "  ", GALAXY))
    assert len(messages) == 1 and messages[0].play_times_s == [60.0, 180.0]
    assert group(plays("", "")) == []


def test_representative_is_the_most_central_transcript_not_the_first():
    messages = group(plays(GALAXY_MISHEARD, GALAXY_OTHER_VOICE, GALAXY))
    assert len(messages) == 1
    assert messages[0].text != GALAXY_MISHEARD


def test_acoustic_keys_keep_plays_together_even_when_transcripts_disagree():
    # Whisper heard one of three identical plays badly; the acoustic match (issue #5) wins.
    transcripts = plays(GALAXY, "Upgrade now.", GALAXY)
    assert len(group(transcripts)) == 2
    messages = group(transcripts, keys=["a", "a", "a"])
    assert len(messages) == 1 and messages[0].plays == 3 and messages[0].text == GALAXY


def test_acoustic_groups_still_merge_by_text():
    # A re-recording does not match acoustically but says the same thing.
    messages = group(plays(GALAXY, FIBER, GALAXY_OTHER_VOICE), keys=["a", "b", "c"])
    assert [m.plays for m in messages] == [2, 1]


def test_keys_must_match_transcripts():
    with pytest.raises(ValueError, match="2 keys for 3 transcripts"):
        group(plays(GALAXY, GALAXY, GALAXY), keys=["a", "b"])


def test_texts_heard_lists_each_messages_distinct_transcripts():
    transcripts = plays(GALAXY, FIBER, GALAXY_OTHER_VOICE, GALAXY, "")
    messages = group(transcripts)
    assert texts_heard(messages, transcripts) == {"m1": [GALAXY, GALAXY_OTHER_VOICE], "m2": [FIBER]}
