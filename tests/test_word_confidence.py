"""Each word's probability (issue #14) is kept where the transcript is: in the message library, so a
warm audit marks the words a cold one marked, and in the stored audit, so a page rendered later does."""
import json
from dataclasses import replace

import numpy as np
import pytest

from app.core.audit import Span, Word
from app.storage import audits as audit_store
from app.storage.schema import open_database
from audits import fingerprint, library
from audits.batch import audit_batch
from audits.data import Transcript
from audits.pipeline import analyse
from audits.report import marked_text
from audits.transcribe import shared_engine
from tests.audio_fixtures import make_hold
from tests.test_fingerprint import CountingEngine

ENGINE, MODEL = "faster-whisper", "tiny.en"


def entry(hearings: list[Transcript]) -> library.Entry:
    frames = np.random.default_rng(1).standard_normal((50, fingerprint.N_MELS)).astype(np.float32)
    return library.Entry("k1", library.HeardBy(library.engine_version(ENGINE), MODEL),
                         fingerprint.Fingerprint(frames, np.linspace(-30, -20, 50, dtype=np.float32)), hearings)


def test_the_library_keeps_each_hearings_words_and_reads_entries_stored_without_them():
    words = (Word("Upgrade", 0.215), Word("to", 0.693), Word("S7,", 0.549))
    row = library.entry_row(entry([Transcript(0.0, 0.0, "Upgrade to S7,", -0.5, 0.02, 1.1, words)]))
    assert library.entry_from_row(row).hearings[0].words == words

    older = [{key: value for key, value in hearing.items() if key != "words"}
             for hearing in json.loads(row["hearings"])]
    hearing = library.entry_from_row(row | {"hearings": json.dumps(older)}).hearings[0]
    assert (hearing.text, hearing.words) == ("Upgrade to S7,", ())
    # an audit taking that hearing does not know its words: none marked, and JSON null, not "none unsure"
    result = analyse("hold.wav", 60.0, [Span(0.0, 8.0, "speech")], [replace(hearing, end_s=8.0)])
    assert result.messages[0].words is None and result.to_json()["messages"][0]["low_confidence_words"] is None


@pytest.mark.slow
def test_a_warm_audit_and_a_page_rendered_later_mark_the_words_the_cold_audit_marked(tmp_path):
    hold = make_hold(tmp_path, ["music 2", "say galaxy-upgrade", "music 2", "say galaxy-upgrade", "music 2"],
                     name="noisy", voice="en-gb-scotland", noise_dbfs=-40.0, seed=5)
    db = open_database(tmp_path / "holdguard.db")
    engine = shared_engine(ENGINE, MODEL)
    [cold], failed = audit_batch([hold.path], db, engine=ENGINE, model=MODEL, transcriber=CountingEngine(engine))
    assert failed == []
    (promo,) = cold.messages
    assert promo.words and promo.unsure_words(), promo.words  # the noisy line leaves Whisper unsure of some
    audit_id = db.execute("select max(id) from audits").fetchone()[0]
    later = audit_store.load(db, audit_id)
    assert later.messages[0].words == promo.words and marked_text(later.messages[0]) == marked_text(promo)

    counting = CountingEngine(engine)
    [warm], _ = audit_batch([hold.path], db, engine=ENGINE, model=MODEL, transcriber=counting)
    assert counting.calls == 0  # every hearing from the library
    assert warm.messages[0].words == promo.words and warm.to_json() == cold.to_json()
