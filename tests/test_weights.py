"""The packaged CTranslate2 tiny.en converts once into an openai-whisper checkpoint that loads and is cached."""
import base64
import gzip

import numpy as np
import pytest
import tokenizers
import torch
import whisper
from faster_whisper.tokenizer import Tokenizer
from whisper.tokenizer import get_tokenizer
from whisper.model import ModelDimensions, Whisper, sinusoids

from audits import weights
from audits.weights import ModelError

TINY_EN_DIMS = {"n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": 384, "n_audio_head": 6, "n_audio_layer": 4,
                "n_vocab": 51864, "n_text_ctx": 448, "n_text_state": 384, "n_text_head": 6, "n_text_layer": 4}


@pytest.fixture(scope="module")
def converted(fresh_cache):
    path = weights.openai_whisper_checkpoint("tiny.en")
    return path, path.stat().st_mtime_ns, path.stat().st_ino


def test_every_ct2_variable_maps_onto_the_openai_whisper_model():
    variables = weights.read_ct2_variables(weights.ct2_model_dir("tiny.en") / "model.bin")
    dims, state = weights.ct2_to_openai(variables)
    assert dims == TINY_EN_DIMS
    expected = Whisper(ModelDimensions(**dims)).state_dict()
    assert set(state) == set(expected)
    assert {key: tuple(array.shape) for key, array in state.items()} == \
           {key: tuple(tensor.shape) for key, tensor in expected.items()}


def test_encoder_positions_are_whispers_sinusoids():
    variables = weights.read_ct2_variables(weights.ct2_model_dir("tiny.en") / "model.bin")
    positions = variables["encoder/position_encodings/encodings"].astype(np.float32)
    # float16 storage rounds them, nothing more; a transposed or misread tensor would be far off.
    np.testing.assert_allclose(positions, sinusoids(1500, 384).numpy(), atol=1e-3)


def test_conversion_writes_a_checkpoint_in_the_cache_dir(converted, fresh_cache):
    path, _, _ = converted
    assert path.parent == fresh_cache / "whisper"
    assert path.name.startswith("tiny.en-") and path.suffix == ".pt"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind


def test_second_call_reuses_the_cached_checkpoint(converted):
    path, mtime_ns, inode = converted
    again = weights.openai_whisper_checkpoint("tiny.en")
    assert again == path
    assert (again.stat().st_mtime_ns, again.stat().st_ino) == (mtime_ns, inode)


def test_checkpoint_is_in_the_format_whisper_load_model_reads(converted):
    path, _, _ = converted
    model = whisper.load_model(str(path), device="cpu")
    assert model.dims == ModelDimensions(**TINY_EN_DIMS)


def test_loaded_model_has_the_official_tiny_en_alignment_heads(converted):
    model = weights.load_openai_whisper("tiny.en")
    official = np.frombuffer(gzip.decompress(base64.b85decode(whisper._ALIGNMENT_HEADS["tiny.en"])), dtype=bool)
    assert model.alignment_heads.to_dense().flatten().tolist() == official.tolist()
    assert not model.training


def test_a_user_checkpoint_path_loads(converted):
    path, _, _ = converted
    model = weights.load_openai_whisper(str(path))
    assert model.dims.n_vocab == 51864


def test_a_user_ct2_folder_is_accepted():
    folder = weights.ct2_model_dir("tiny.en")
    assert weights.ct2_model_dir(str(folder)) == folder


def test_int8_weights_are_dequantized_with_their_scale():
    quantized = np.array([[100, -50], [20, 10]], dtype=np.int8)
    scale = np.array([200.0, 10.0], dtype=np.float32)  # one per output row
    variables = weights._dequantize({"w": quantized, "w_scale": scale})
    np.testing.assert_allclose(variables["w"], [[0.5, -0.25], [2.0, 1.0]])
    assert "w_scale" not in variables


def test_unknown_model_name_is_a_one_line_error():
    with pytest.raises(ModelError, match=r"unknown model 'tiny\.fr'.*tiny\.en") as error:
        weights.ct2_model_dir("tiny.fr")
    assert "\n" not in str(error.value)


def test_folder_without_model_bin_is_refused(tmp_path):
    with pytest.raises(ModelError, match="not a CTranslate2 Whisper model folder"):
        weights.openai_whisper_checkpoint(tmp_path)


def test_truncated_model_bin_is_refused(tmp_path):
    source = weights.ct2_model_dir("tiny.en") / "model.bin"
    (tmp_path / "model.bin").write_bytes(source.read_bytes()[:1_000_000])
    with pytest.raises(ModelError, match="truncated"):
        weights.read_ct2_variables(tmp_path / "model.bin")


def test_garbage_checkpoint_names_the_file(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ModelError, match=r"bad\.pt: not a usable openai-whisper checkpoint") as error:
        weights.load_openai_whisper(bad)
    assert "\n" not in str(error.value)


def test_checkpoint_given_to_faster_whisper_is_refused(tmp_path):
    checkpoint = tmp_path / "model.pt"
    torch.save({}, checkpoint)
    with pytest.raises(ModelError, match="faster-whisper needs a CTranslate2 model folder"):
        weights.ct2_model_dir(checkpoint)


# Prompt-like texts: words starting with "t" (base's packaged tokenizer.json lacked the merge "Ġ t",
# so faster-whisper split " to", " the", " today"), names, numbers, prices and punctuation.
TOKENIZER_TEXTS = [
    " Upgrade to the brand new Galaxy S7 today and get fifty percent off your first three months.",
    " Galaxy S7, Fiber 1G, The Total Care Plan.", "to the", " to the today", "Today", " TODAY!",
    " iPhone 15 Pro Max, Pixel 8a, Xfinity X1, T-Mobile Tuesdays, AT&T TV, Netflix & Hulu",
    " Only $9.99 a month, or $119.88 a year (save 20%)!", " Call 1-800-555-0199 ext. 42, option #3.",
    " It's 10:30 a.m.; we'll be with you in 2-3 minutes... Thank you—truly—for holding?",
    " “Quoted” 'single' «guillemets» über café naïve 日本語 🎵", "   spaces  and\ttabs\nnewlines ",
]


@pytest.mark.parametrize("name", ["tiny.en", "base"])
def test_faster_whisper_tokenizer_encodes_like_openai_whispers(name, fresh_cache):
    # faster-whisper tokenizes a prompt with the folder's tokenizer.json; openai-whisper with tiktoken.
    folder = weights.ct2_model_dir(name)
    multilingual = name == "base"
    hf = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    faster = Tokenizer(hf, multilingual, task="transcribe", language="en")
    openai = get_tokenizer(multilingual, num_languages=99, language="en", task="transcribe")
    for text in TOKENIZER_TEXTS:
        assert faster.encode(text) == openai.encode(text), text
