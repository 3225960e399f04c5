"""Speech to text for one speech segment at a time, behind one small interface with two engines.

    engine = load_engine("faster-whisper", "tiny.en")
    transcript = engine.transcribe(samples, start_s=70.0)   # samples: float32, 16 kHz, mono
    transcripts = engine.transcribe_many([clip_a, clip_b], starts_s=[70.0, 120.0])
    engine.score(samples, ["about 8 minutes", "about 18 minutes"])  # which the clip says (log-probabilities)

Each clip is its own decoding window (a clip over 30 s, several), so a clip's text and scores do not
depend on the clips beside it; faster-whisper decodes up to BATCH_CLIPS clips of up to 20 s (with the
same token cap) together, which gives the same text and scores as one by one, in less time.

Both engines run the same Whisper weights (see audits/weights.py) with the same decoding settings
(language "en", beam search, temperature 0 only, no conditioning on previous text), so they give the
same text: on the test audio their tokens and log-probabilities are identical. Output that looks like
one of Whisper's known hallucinations is returned as "" (see `hallucination`); a clip whose beam
search fell into a loop is decoded again greedily (see `looped`).

Worker processes (audits.batch): the parent calls `prepare_model(engine, model)` once (the one-off
conversion), workers start with the "spawn" context (torch and CTranslate2 thread pools do not
survive fork) and each loads the engine once. Every decoder has DECODER_THREADS threads, in a worker
or not, on any machine: a batch gets its parallelism from its workers and from decoding clips together.
"""
from __future__ import annotations

import functools
import hashlib
import itertools
import logging
import math
import os
import re
from dataclasses import dataclass, replace

import numpy as np

from audits.data import SAMPLE_RATE, Transcript, Word
from audits.weights import ModelError

ENGINES = ("openai-whisper", "faster-whisper")
# Same weights, same decoding, same text (tokens and log-probabilities agree on the test audio); on
# 2 cores faster-whisper decodes a speech clip in about half the time and needs no torch import.
# Measured in tests/bench/audit_speed.py.
DEFAULT_ENGINE = "faster-whisper"
# Whisper base: in tests/bench/accuracy.py it makes a quarter fewer word errors than tiny.en (0.328
# against 0.426 with the catalog's names), names more promo products (28 against 25 of 30), invents
# none, gets more findings right on whole holds (2 against 1 of 3) and hears real speech better, at
# about twice the decoding time; every audit test passes with it. (Its re-audit once differed from a
# batch's: a clip decoded in a batch and alone took different prompt tokens, fixed, and the test
# copied the database without its -wal file.) `--model tiny.en` is the faster, weaker choice.
DEFAULT_MODEL = "base"
# Threads of one decoder, fixed by design rather than taken from the machine's cores: what a clip is
# heard as must not depend on where it was decoded. (Measured on this machine's float32 and int8
# kernels, 1 and 2 threads gave the same text for all 60 clips of tests/bench/accuracy.py, with
# tiny.en and base; int8 gives bit-identical encoder output at any thread count, float32 differs in
# the 5th decimal; other CPUs were not measured.) Two: a single audit's cost is Whisper's encoder on
# its distinct messages, which two threads nearly halve (base, 3 clips, idle: 3.8 s with one thread,
# 2.1 s with two); in a batch of one worker per core the threads of two workers share the cores, with
# sleeping rather than spinning waits (`_passive_openmp_threads`).
DECODER_THREADS = 2
# Beam search as openai-whisper's CLI does; greedy (1) is about twice as fast but hears a little less.
DEFAULT_BEAM_SIZE = 5

# Temperature 0 only, no fallback to sampling: identical audio must give identical text (plays of one
# message are grouped by their text, and the two engines must agree). The fallback kicks in when
# avg_logprob < -1 or compression_ratio > 2.4: never on clear espeak speech here, now and then on
# telephone-band speech (avg_logprob down to -1.27), where sampling would give each play of the same
# message a different text; on music and noise it samples different nonsense, rejected below anyway.
TEMPERATURE = 0.0

# Tokens a window may produce, from its duration: fast speech (250 words a minute) with punctuation
# and timestamps stays under 6 tokens/s. Without a cap a steady tone decodes as "beep beep ..." up to
# the model's limit (224 tokens in openai-whisper, 445 in faster-whisper): 10-35 s of beam search for
# a 4 s beep; with the cap a few seconds, and it is still rejected as repetition. Same cap in both
# engines. Caps come in steps of CAP_STEP_S of audio (170 tokens up to 15 s, 224 above), so that the
# messages of a hold (a few seconds to 15 s) share one and can be decoded together, each with the result
# it gets alone.
MAX_TOKENS_PER_S = 10
MIN_TOKENS = 20
CAP_STEP_S = 15.0
WINDOW_S = 30.0  # Whisper decodes 30 s windows; the cap applies per window
MAX_TOKENS = 224  # openai-whisper's own per-window limit (n_text_ctx // 2)
# Clips decoded together by engines that batch (faster-whisper): the encoder costs the same per clip
# either way, the beam search far less together. Each clip in a batch adds ~55 MB to the peak memory
# (the encoder's attention over a 30 s window), so batches stay small. Only clips with the same token
# cap go together (the batch has one).
BATCH_CLIPS = 4
# Only clips this long are batched. Near a full window the batched pipeline drops a last segment that
# has no closing timestamp, where decoding alone goes back for it; with 10 s of window to spare,
# speech always ends with one. Under 0.1 s two clips could share a `seek` (10 ms frames).
BATCH_MIN_S, BATCH_MAX_S = 0.1, 20.0
# The batched pipeline drops a window's last phrase when no timestamp closes it, where decoding alone
# goes back and decodes it again ("... can repair and" / "... can repair and to have read in life in
# your home."): the batch's last timestamp then falls short of the clip's end, which a complete
# decoding reaches (within 0.1 s on the 60 clips of tests/bench/accuracy.py; the one cut short 2.0 s
# before it). Such a clip is decoded alone, so a clip's text does not depend on the path it took.
UNFINISHED_GAP_S = 1.0
# ... except a hearing that says its whole prompt, a flow's script (audits.scripts): it ends where the
# script ends, however much of the clip is left (the 45-minute bench hold's promo was heard to its last
# word 1.9 s before the clip's end, then decoded alone again for nothing: 4.2 s instead of 1.9 s).
# Word probabilities (issue #14): Whisper's cross-attention alignment of the decoded tokens, as
# `word_timestamps=True` makes it, each word's probability the mean of its tokens'. The batched path
# aligns after decoding with the batch's encoder output, which leaves the text alone. The one-clip
# paths of both engines would also move where a window's next decoding starts to the last word's end,
# which changed a clip's text (1 of the 60 clips of tests/bench/accuracy.py: "How?" became "How"), so
# there the words are aligned after decoding, encoding the window once more. Punctuation joins the
# word beside it, as both engines do by default.
WORD_PREPEND_PUNCTUATION = "\"'“¿([{-"
WORD_APPEND_PUNCTUATION = "\"'.。,，!！?？:：”)]}、"
# A word's probability is kept to this many decimal places: a reader is shown whole percents, and the
# same clip decoded in another batch or with other threads differs from the 5th place on (float32),
# which more places would now and then carry into a report that must equal an earlier one's.
WORD_PROBABILITY_PLACES = 2


# Transcriber.score: texts scored in batches of this many (CTranslate2 repeats the window's encoding for
# each text of a batch: 16 x 1500 x 512 floats is 49 MB with base).
SCORE_BATCH = 16
# ... and against the encoded positions of the clip's own audio only (plus this margin), not the whole
# 30 s window's padding: the decoder's cross-attention costs in proportion to the positions it reads,
# and a 5 s message scored against 1500 positions took 100 ms a text against 30 ms (base, 2 cores).
# Which of two texts scores higher did not change on any clip tried (tests/bench/README.md, accuracy.py).
SCORE_EXTRA_POSITIONS = 10


def scored_positions(n_frames: int) -> int:
    """Encoder positions read when scoring a clip of `n_frames` mel frames (two frames a position)."""
    return min((n_frames + 1) // 2 + SCORE_EXTRA_POSITIONS, 1500)


def token_limit(duration_s: float) -> int:
    """How many tokens one decoding window of a `duration_s` segment may produce."""
    steps = math.ceil(min(duration_s, WINDOW_S) / CAP_STEP_S)
    return min(MAX_TOKENS, MIN_TOKENS + int(MAX_TOKENS_PER_S * CAP_STEP_S * steps))


# Hallucination guard thresholds. The first two are Whisper's own defaults
# (no_speech_threshold=0.6, logprob_threshold=-1.0): it skips a window when the model thinks there is
# no speech AND is unsure of its text. Measured here (tiny.en): silence, noise, hum and synthetic music
# give no_speech_prob 0.87-0.95 with avg_logprob -0.97 to -1.42; espeak speech 0.03-0.65 with -0.3 to -1.27
# (the low end is telephone-band mu-law speech, which is why logprob alone does not reject).
NO_SPEECH_PROB_MAX = 0.6
AVG_LOGPROB_MIN = -1.0
# Above this the model is sure there is no speech, however fluent its text: line noise decoded as
# "I'm going to go ahead and take a look..." at avg_logprob -0.75 with no_speech_prob 0.95. Real speech,
# clean or telephone-band mu-law, measured at most 0.65; non-speech at least 0.87.
NO_SPEECH_PROB_SURE = 0.8
# Whisper's repetition test: gzip compresses looping text ("beep beep beep ...", measured 29 on a pure
# tone) far better than speech (0.8-1.0 on short sentences).
COMPRESSION_RATIO_MAX = 2.4
# Short fillers Whisper says on non-speech ("You" on silence at avg_logprob -0.97, just inside the
# logprob rule). They can be real speech, so they are dropped only when the model also leans towards
# "no speech" - above this it is more likely non-speech than speech.
FILLER_NO_SPEECH_PROB_MIN = 0.5
FILLER_PHRASES = frozenset({
    "you", "thank you", "thank you very much", "thanks", "bye", "bye bye", "okay", "oh", "uh", "um",
    "hmm", "so", "i", "the end", "music", "applause", "silence",
})
# Lines from the subtitles Whisper was trained on (credits, video outros). Nobody says them on a hold
# line, so they are dropped whatever the scores.
PHANTOM_PATTERN = re.compile(
    r"thanks? (you )?for watching|(subtitles|captions|transcription|transcribed|translated|translation)"
    r" by|amara org|please subscribe|like and subscribe|subscribe to (my|the|our) channel"
    r"|see you (in the )?next (video|time)")
# Sound-event annotations Whisper writes instead of words: [Music], (upbeat music), *laughs*, music notes.
ANNOTATION_PATTERN = re.compile(r"\[[^\]]*\]|\([^)]*\)|\*[^*]*\*|[♪♫♬🎵🎶]+")


# Vocabulary prompt: product names given to Whisper as text that came before the clip, so a name the
# audio says is spelled as the catalog spells it ("Galaxy S7", not "Galaxy S Penver"). Whisper keeps
# at most half its 448-token context for a prompt; names beyond this many characters are left out.
PROMPT_MAX_CHARS = 400
# A prompted hearing that names the prompt's products this many times in all, or this many different
# ones, has read the prompt back instead of the audio: the clip is decoded again without it. tiny.en
# heard the fiber promo once as "Switch to Fiber 1G, Home Protection Plan, Home Safety Plan, Home
# Protection Plan, ..." and a Galaxy S9 promo as "Meet the new Galaxy S7, 3v4, Home Protection Plan."
# (tests/bench/accuracy.py; the second would invent the caller's product). A message that really
# names two catalog products is then heard without the names' help: the demo catalog has none.
PROMPT_ECHO_MENTIONS = 3
PROMPT_ECHO_NAMES = 2
# Only a prompt's pieces of at most this many words are names that can be read back. A flow's script
# given as the prompt (audits.scripts) is meant to be heard back, and is checked otherwise: "You are
# currently caller number seven, waiting to speak with a representative." is two pieces of 6 words,
# which heard back were taken for an echo and the clip heard again without the script.
PROMPT_NAME_MAX_WORDS = 4


def vocabulary_prompt(names) -> str | None:
    """The prompt for a list of product names: "Galaxy S7, Fiber 1G." (each once, in order), or None.

    Measured in tests/bench/accuracy.py: with the catalog's names, tiny.en names the product of 18 of
    20 generated promo plays instead of 9, and no clip names a product it does not say."""
    unique = list(dict.fromkeys(" ".join(str(name).split()) for name in names if str(name).strip()))
    kept, length = [], 0
    for name in unique:
        length += len(name) + 2
        if length > PROMPT_MAX_CHARS:
            break
        kept.append(name)
    return ", ".join(kept) + "." if kept else None


def echoes_prompt(text: str, prompt: str | None) -> bool:
    """Whether a hearing reads the vocabulary prompt back: its names (pieces of at most
    PROMPT_NAME_MAX_WORDS words) mentioned PROMPT_ECHO_MENTIONS times in all, or PROMPT_ECHO_NAMES
    different ones."""
    if not prompt:
        return False
    heard = f" {normalise(text)} "
    names = {normalise(name) for name in prompt.rstrip(".").split(",")
             if 0 < len(name.split()) <= PROMPT_NAME_MAX_WORDS} - {""}
    mentions = {name: heard.count(f" {name} ") for name in names}
    return (sum(mentions.values()) >= PROMPT_ECHO_MENTIONS
            or sum(count > 0 for count in mentions.values()) >= PROMPT_ECHO_NAMES)


@dataclass
class Decoded:
    """One segment as a Whisper engine returns it."""
    text: str
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    n_tokens: int
    words: tuple[Word, ...] = ()


def hallucination(decoded: Decoded) -> str | None:
    """Why this decoded text should not be trusted, or None when it looks like real speech."""
    words = normalise(strip_annotations(decoded.text))
    if not words:
        return "no words (only punctuation or sound annotations)"
    if decoded.no_speech_prob > NO_SPEECH_PROB_MAX and decoded.avg_logprob < AVG_LOGPROB_MIN:
        return f"no_speech_prob {decoded.no_speech_prob:.2f} with avg_logprob {decoded.avg_logprob:.2f}"
    if decoded.no_speech_prob > NO_SPEECH_PROB_SURE:
        return f"no_speech_prob {decoded.no_speech_prob:.2f}"
    if decoded.compression_ratio > COMPRESSION_RATIO_MAX:
        return f"repetitive text (compression ratio {decoded.compression_ratio:.1f})"
    if PHANTOM_PATTERN.search(words):
        return f"subtitle phantom {words!r}"
    if words in FILLER_PHRASES and decoded.no_speech_prob > FILLER_NO_SPEECH_PROB_MIN:
        return f"filler {words!r} with no_speech_prob {decoded.no_speech_prob:.2f}"
    return None


def strip_annotations(text: str) -> str:
    """Text without Whisper's sound annotations ([Music], (laughs), ♪), whitespace collapsed."""
    return " ".join(ANNOTATION_PATTERN.sub(" ", text).split())


def normalise(text: str) -> str:
    """Lower case words only: punctuation dropped, whitespace collapsed (for comparing transcripts)."""
    return " ".join(re.sub(r"[^\w\s']|_", " ", text.lower()).replace("'", "").split())


def looped(transcript: Transcript) -> bool:
    """Whether nothing of a hearing was kept because the text looped (COMPRESSION_RATIO_MAX): Whisper's
    beam search can fall into a loop on a clip greedy decoding hears through - "Meet the new Galaxy
    S.I.l.l.l.l.l..." with beam 5 (and 10), "Meet the new Galaxy S-Ile, to make in your old phone and
    gain 200 dollars today." greedily (base, a Galaxy S9 promo in tests/bench/accuracy.py, no prompt).
    Whisper itself samples again at a higher temperature; decoding greedily keeps a clip's text the
    same every time it is heard."""
    return not transcript.text and transcript.compression_ratio > COMPRESSION_RATIO_MAX


def combine(decoded: list[Decoded], start_s: float, end_s: float) -> Transcript:
    """One Transcript from an engine's segments: the trusted ones' text, their token-weighted scores.

    When nothing is trusted the text is "" and the scores are those of everything decoded, so a reader
    can see why it was rejected.
    """
    trusted = [segment for segment in decoded if hallucination(segment) is None]
    scored = trusted or decoded
    if not scored:
        return Transcript(start_s=start_s, end_s=end_s, text="")
    weights = np.array([max(segment.n_tokens, 1) for segment in scored], dtype=float)
    return Transcript(
        start_s=start_s,
        end_s=end_s,
        text=" ".join(strip_annotations(segment.text) for segment in trusted),
        avg_logprob=float(np.average([segment.avg_logprob for segment in scored], weights=weights)),
        no_speech_prob=float(max(segment.no_speech_prob for segment in scored)),
        compression_ratio=float(max(segment.compression_ratio for segment in scored)),
        words=tuple(word for segment in trusted for word in segment.words if strip_annotations(word.text)),
    )


def heard_words(aligned) -> tuple[Word, ...]:
    """Words as both engines align them ({"word": " S7,", "probability": 0.93, ...} or faster-whisper's
    Word) as Words, probabilities to WORD_PROBABILITY_PLACES."""
    def pair(word):
        return (word["word"], word["probability"]) if isinstance(word, dict) else (word.word, word.probability)

    return tuple(Word(text.strip(), round(float(probability), WORD_PROBABILITY_PLACES))
                 for text, probability in map(pair, aligned or ()) if text.strip())


class Transcriber:
    """A loaded Whisper engine. `transcribe` takes one speech segment and returns one Transcript."""

    engine = ""

    def __init__(self, model: str, beam_size: int, threads: int):
        self.model, self.beam_size, self.threads = str(model), beam_size, threads

    def transcribe(self, samples: np.ndarray, start_s: float = 0.0, prompt: str | None = None) -> Transcript:
        """Transcribe one speech segment (float32, 16 kHz, mono) that starts `start_s` into the recording.

        `prompt` is text Whisper reads as what came before (see `vocabulary_prompt`): names in it are
        spelled as written when the audio says them; audio that does not say them is not changed."""
        samples = np.ascontiguousarray(samples, dtype=np.float32)
        if samples.ndim != 1:
            raise ValueError(f"transcribe needs mono samples (1-D), got shape {samples.shape}")
        return self._settled(self._heard(samples, start_s, prompt, self.beam_size), samples, start_s, prompt)

    def _heard(self, samples: np.ndarray, start_s: float, prompt: str | None, beam_size: int) -> Transcript:
        end_s = start_s + len(samples) / SAMPLE_RATE
        decoded = self._decode(samples, token_limit(end_s - start_s), prompt or None, beam_size) if len(samples) else []
        return combine(decoded, start_s, end_s)

    def _settled(self, transcript: Transcript, samples: np.ndarray, start_s: float, prompt: str | None) -> Transcript:
        """A hearing as kept: decoded again greedily when the beam search looped (`looped`), and again
        without the prompt when it reads the prompt back (`echoes_prompt`)."""
        if looped(transcript) and self.beam_size > 1:
            transcript = self._heard(samples, start_s, prompt, 1)
        if echoes_prompt(transcript.text, prompt):
            return self.transcribe(samples, start_s)
        return transcript

    def transcribe_many(self, clips: list[np.ndarray], starts_s: list[float] | None = None,
                        prompt: str | None = None) -> list[Transcript]:
        """`transcribe` for each clip, in order; `starts_s` defaults to 0.0 for every clip.
        Engines that can decode several clips at once (faster-whisper) do so here."""
        return [self.transcribe(clip, start_s, prompt) for clip, start_s in zip(clips, _start_times(clips, starts_s))]

    def score(self, samples: np.ndarray, texts: list[str]) -> list[float] | None:
        """How well each of `texts` reads as the words of `samples` (one window, up to 30 s): the sum of
        Whisper's log-probabilities of its tokens, each given the audio and the tokens before it (no
        prompt, no decoding). Texts that differ in one word score the audio's word apart (see
        audits.scripts.judge_numbers). None for a clip longer than one window or no texts."""
        raise NotImplementedError

    def _decode(self, samples: np.ndarray, max_tokens: int, prompt: str | None, beam_size: int) -> list[Decoded]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.engine} model={self.model} beam_size={self.beam_size}>"


class OpenAIWhisper(Transcriber):
    """openai-whisper (PyTorch) on the converted checkpoint, float32 on the CPU."""

    engine = "openai-whisper"

    def __init__(self, model: str = DEFAULT_MODEL, beam_size: int = DEFAULT_BEAM_SIZE,
                 threads: int = DECODER_THREADS):
        import torch

        from audits.weights import load_openai_whisper

        super().__init__(model, beam_size, threads)
        torch.set_num_threads(threads)  # process-wide: torch has no per-model thread count
        self.whisper_model = load_openai_whisper(model)

    def _decode(self, samples: np.ndarray, max_tokens: int, prompt: str | None, beam_size: int) -> list[Decoded]:
        result = self.whisper_model.transcribe(
            samples, language="en", fp16=False, temperature=TEMPERATURE, beam_size=beam_size,
            sample_len=max_tokens, initial_prompt=prompt,
            condition_on_previous_text=False,
            no_speech_threshold=None,  # keep every window: our guard decides, the same for both engines
            verbose=None)
        self._align_words(samples, result["segments"])
        return [Decoded(segment["text"], segment["avg_logprob"], segment["no_speech_prob"],
                        segment["compression_ratio"], len(segment["tokens"]), heard_words(segment.get("words")))
                for segment in result["segments"]]

    def _align_words(self, samples: np.ndarray, segments: list[dict]) -> None:
        """Give each decoded segment its "words", window by window (see WORD_PREPEND_PUNCTUATION)."""
        from whisper.audio import N_FRAMES, N_SAMPLES, log_mel_spectrogram, pad_or_trim
        from whisper.timing import add_word_timestamps

        model, tokenizer = self.whisper_model, self._tokenizer
        mel = log_mel_spectrogram(samples, model.dims.n_mels, padding=N_SAMPLES)  # (n_mels, frames + N_FRAMES)
        content_frames = mel.shape[-1] - N_FRAMES
        spoken = [segment for segment in segments if segment["text"].strip()]
        for seek, window in itertools.groupby(spoken, key=lambda segment: segment["seek"]):
            n_frames = min(N_FRAMES, content_frames - seek)
            add_word_timestamps(segments=list(window), model=model, tokenizer=tokenizer,
                                mel=pad_or_trim(mel[:, seek:seek + n_frames], N_FRAMES), num_frames=n_frames,
                                prepend_punctuations=WORD_PREPEND_PUNCTUATION,
                                append_punctuations=WORD_APPEND_PUNCTUATION, last_speech_timestamp=0.0)

    def score(self, samples: np.ndarray, texts: list[str]) -> list[float] | None:
        import torch
        from whisper.audio import N_FRAMES, N_SAMPLES, log_mel_spectrogram, pad_or_trim

        model, tokenizer = self.whisper_model, self._tokenizer
        mel = log_mel_spectrogram(np.ascontiguousarray(samples, dtype=np.float32), model.dims.n_mels, padding=N_SAMPLES)
        n_frames = mel.shape[-1] - N_FRAMES
        if n_frames > N_FRAMES or not texts:
            return None
        start = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        scores = []
        with torch.no_grad():
            audio = model.embed_audio(pad_or_trim(mel[:, :n_frames], N_FRAMES)[None])[:, :scored_positions(n_frames)]
            for text in texts:
                text_tokens = tokenizer.encode(" " + text.strip())
                logprobs = model.logits(torch.tensor([start + text_tokens]), audio)[0].log_softmax(-1)
                at = torch.arange(len(start) - 1, len(start) - 1 + len(text_tokens))
                scores.append(float(logprobs[at, torch.tensor(text_tokens)].sum()))
        return scores

    @functools.cached_property
    def _tokenizer(self):
        from whisper.tokenizer import get_tokenizer

        model = self.whisper_model
        return get_tokenizer(model.is_multilingual, num_languages=model.num_languages, language="en", task="transcribe")


class FasterWhisper(Transcriber):
    """faster-whisper (CTranslate2) on the packaged model folder."""

    engine = "faster-whisper"

    def __init__(self, model: str = DEFAULT_MODEL, beam_size: int = DEFAULT_BEAM_SIZE, threads: int = DECODER_THREADS,
                 compute_type: str = "float32"):
        from audits.weights import ct2_model_dir

        super().__init__(model, beam_size, threads)
        model_dir = ct2_model_dir(model)  # sets HF_HUB_OFFLINE before faster_whisper is imported
        from faster_whisper import WhisperModel

        self.compute_type, self._pipeline = compute_type, None
        # It logs every clip at INFO ("Processing audio with duration...", "VAD filter removed..."),
        # which an app's INFO logging (holdguard demo, serve) would print for each batch; a level the
        # user set is left alone.
        whisper_log = logging.getLogger("faster_whisper")
        if whisper_log.level == logging.NOTSET:
            whisper_log.setLevel(logging.WARNING)
        try:
            self.whisper_model = _remembering(WhisperModel)(str(model_dir), device="cpu", compute_type=compute_type,
                                                            cpu_threads=threads, local_files_only=True)
        except (RuntimeError, ValueError, OSError) as error:
            raise ModelError(f"{model_dir}: faster-whisper cannot load it ({str(error).strip()})") from error

    def _decode(self, samples: np.ndarray, max_tokens: int, prompt: str | None, beam_size: int) -> list[Decoded]:
        segments, _info = self.whisper_model.transcribe(
            samples, language="en", temperature=TEMPERATURE, beam_size=beam_size, max_new_tokens=max_tokens,
            initial_prompt=prompt,
            condition_on_previous_text=False, no_speech_threshold=None, vad_filter=False)
        segments = list(segments)
        return [_decoded(segment, words) for segment, words in zip(segments, self._aligned_words(samples, segments))]

    def _aligned_words(self, samples: np.ndarray, segments: list) -> list[list[dict]]:
        """Each decoded segment's words, aligned window by window (see WORD_PREPEND_PUNCTUATION)."""
        from faster_whisper.audio import pad_or_trim

        model = self.whisper_model
        features = model.feature_extractor(samples)  # (n_mels, frames)
        content_frames = features.shape[-1] - 1
        pieces = [{"seek": segment.seek, "start": segment.start, "end": segment.end, "tokens": segment.tokens}
                  for segment in segments]
        for seek, window in itertools.groupby(pieces, key=lambda piece: piece["seek"]):
            n_frames = min(model.feature_extractor.nb_max_frames, content_frames - seek)
            encoder_output = model.encode(pad_or_trim(features[:, seek:seek + n_frames]))
            model.add_word_timestamps([list(window)], self.tokenizer, encoder_output, n_frames,
                                      WORD_PREPEND_PUNCTUATION, WORD_APPEND_PUNCTUATION, 0.0)
        return [piece.get("words", []) for piece in pieces]

    def score(self, samples: np.ndarray, texts: list[str]) -> list[float] | None:
        import ctranslate2
        from faster_whisper.audio import pad_or_trim

        model = self.whisper_model
        features = model.feature_extractor(np.ascontiguousarray(samples, dtype=np.float32))
        n_frames = features.shape[-1] - 1
        if n_frames > model.feature_extractor.nb_max_frames or not texts:
            return None
        encoded = model.encoded(pad_or_trim(features[:, :n_frames]))[None, :scored_positions(n_frames)]
        tokens = [self.tokenizer.encode(" " + text.strip()) for text in texts]
        scores = []
        for first in range(0, len(tokens), SCORE_BATCH):
            batch = tokens[first:first + SCORE_BATCH]
            repeated = ctranslate2.StorageView.from_array(np.ascontiguousarray(np.repeat(encoded, len(batch), axis=0)))
            for result in model.model.align(repeated, self.tokenizer.sot_sequence, batch, [n_frames] * len(batch)):
                scores.append(float(np.log(np.maximum(result.text_token_probs, 1e-30)).sum()))
        return scores

    def transcribe_many(self, clips: list[np.ndarray], starts_s: list[float] | None = None,
                        prompt: str | None = None) -> list[Transcript]:
        """Clips of BATCH_MIN_S to BATCH_MAX_S with the same token cap are decoded BATCH_CLIPS at a
        time: each is still its own 30 s window with its own scores, but the beam search runs for
        all of them together, which costs far less than one after another on a CPU, and each clip
        gets the text and scores it gets alone. Other clips are decoded alone."""
        starts_s = _start_times(clips, starts_s)
        clips = [np.ascontiguousarray(clip, dtype=np.float32) for clip in clips]
        heard: list[Transcript | None] = [None] * len(clips)
        by_cap: dict[int, list[int]] = {}
        for i, clip in enumerate(clips):
            if clip.ndim == 1 and BATCH_MIN_S * SAMPLE_RATE <= len(clip) <= BATCH_MAX_S * SAMPLE_RATE:
                by_cap.setdefault(token_limit(len(clip) / SAMPLE_RATE), []).append(i)
        for cap, members in by_cap.items():
            for first in range(0, len(members), BATCH_CLIPS):
                batch = members[first: first + BATCH_CLIPS]
                for i, decoded in zip(batch, self._decode_batch([clips[i] for i in batch], cap, prompt or None)):
                    if decoded is not None:  # None: unfinished, heard alone below
                        heard[i] = combine(decoded, starts_s[i], starts_s[i] + len(clips[i]) / SAMPLE_RATE)
        return [self.transcribe(clip, start_s, prompt) if transcript is None  # unfinished: heard alone
                else self._settled(transcript, clip, start_s, prompt)
                for transcript, clip, start_s in zip(heard, clips, starts_s)]

    def _decode_batch(self, clips: list[np.ndarray], max_tokens: int,
                      prompt: str | None = None) -> list[list[Decoded] | None]:
        """Each clip's segments, decoded together (faster-whisper's batched pipeline, one clip per window),
        or None for a clip whose decoding the batched pipeline left unfinished (see UNFINISHED_GAP_S)."""
        bounds_n = np.cumsum([0] + [len(clip) for clip in clips])
        # The pipeline names each segment's clip by `seek`, the 10 ms frame the clip starts at.
        frames_per_s = self.whisper_model.frames_per_second
        clip_at_seek = {int(start_n / SAMPLE_RATE * frames_per_s): i for i, start_n in enumerate(bounds_n[:-1])}
        segments, _info = self._batched().transcribe(
            np.concatenate(clips), language="en", temperature=TEMPERATURE, beam_size=self.beam_size,
            max_new_tokens=max_tokens, without_timestamps=False, batch_size=len(clips),
            word_timestamps=True, prepend_punctuations=WORD_PREPEND_PUNCTUATION,
            append_punctuations=WORD_APPEND_PUNCTUATION,
            # The one-clip path (and openai-whisper) encodes " " + the prompt; the batched one encodes
            # the text as given. Without the space the prompt is other tokens, and a clip heard in a
            # batch and alone came out differently (30 of 60 clips in tests/bench/accuracy.py).
            initial_prompt=" " + prompt.strip() if prompt else None,
            # in seconds, which it turns back into samples with int(): half a sample on, so exactly
            clip_timestamps=[{"start": (start_n + 0.5) / SAMPLE_RATE, "end": (end_n + 0.5) / SAMPLE_RATE}
                             for start_n, end_n in zip(bounds_n[:-1], bounds_n[1:])])
        found: list[list] = [[] for _ in clips]
        for segment in segments:
            found[clip_at_seek[segment.seek]].append(segment)
        starts_s, ends_s = bounds_n[:-1] / SAMPLE_RATE, bounds_n[1:] / SAMPLE_RATE
        return [_window_decoded(pieces) if max((self._decoded_until_s(p, start_s) for p in pieces), default=0.0)
                >= end_s - UNFINISHED_GAP_S or _says_whole(pieces, prompt) else None
                for pieces, start_s, end_s in zip(found, starts_s, ends_s)]

    def _decoded_until_s(self, segment, clip_start_s: float) -> float:
        """Where a batched segment's decoding ended: its last timestamp token (its `end` is moved to its
        last word's end once words are aligned). A segment with no timestamp ran to its window's end."""
        first_timestamp = self.tokenizer.timestamp_begin
        timestamps = [token - first_timestamp for token in segment.tokens if token >= first_timestamp]
        if not timestamps or timestamps[-1] == 0:
            return clip_start_s + WINDOW_S
        return clip_start_s + timestamps[-1] * self.whisper_model.time_precision

    @functools.cached_property
    def tokenizer(self):
        """faster-whisper's tokenizer for English transcription, as its decoding makes it."""
        from faster_whisper.tokenizer import Tokenizer

        model = self.whisper_model
        return Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language="en")

    def _batched(self):
        from faster_whisper import BatchedInferencePipeline

        if self._pipeline is None:
            self._pipeline = BatchedInferencePipeline(self.whisper_model)
        return self._pipeline


def _remembering(whisper_model_class):
    """faster-whisper's WhisperModel, remembering the windows it encoded last: the encoding is the costly
    half of Whisper (0.7 s a window with base on 2 cores), and an audit encodes the same window again
    and again - a message's first play is heard (in a batch), heard once more with its script, its
    words aligned, and scored (Transcriber.score). Each cuts the same features from the same clip, so a
    window whose features were encoded lately gets that encoding back. Keyed by the features' digest;
    the REMEMBERED_WINDOWS latest are kept."""
    import ctranslate2

    class Remembering(whisper_model_class):
        _known: tuple = ()  # ((digest, encoding), ...), latest first; replaced whole: safe across threads

        def encode(self, features: np.ndarray):
            batch = features if features.ndim == 3 else features[None]
            digests = [_digest(window) for window in batch]
            known = dict(self._known)
            if self.model.device == "cpu" and all(digest in known for digest in digests):
                return ctranslate2.StorageView.from_array(np.stack([known[digest] for digest in digests]))
            output = super().encode(features)
            if output.device == "cpu":
                fresh = tuple(zip(digests, np.array(output)))
                self._known = (fresh + tuple(item for item in self._known if item[0] not in digests)
                               )[:REMEMBERED_WINDOWS]
            return output

        def encoded(self, window: np.ndarray) -> np.ndarray:
            """One window's encoding (positions, width), remembered or computed."""
            return np.array(self.encode(window))[0]

    return Remembering


# Window encodings a faster-whisper engine keeps (`_remembering`): a batch of first hearings
# (BATCH_CLIPS) and the script hearings and scorings that follow it. 3 MB each with base.
REMEMBERED_WINDOWS = 8


def _digest(window: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(window).tobytes(), digest_size=16).digest()


def _decoded(segment, words=None) -> Decoded:
    """A faster-whisper Segment as a Decoded, with its words (aligned after decoding, or the segment's)."""
    return Decoded(segment.text, segment.avg_logprob, segment.no_speech_prob, segment.compression_ratio,
                   len(segment.tokens), heard_words(segment.words if words is None else words))


def _says_whole(segments: list, prompt: str | None) -> bool:
    """Whether a window's segments say the whole prompt, word for word (see UNFINISHED_GAP_S)."""
    return bool(prompt) and normalise("".join(segment.text for segment in segments)) == normalise(prompt)


def _window_decoded(segments: list) -> list[Decoded]:
    """One window's segments from the batched pipeline, scored as faster-whisper scores a window decoded
    alone: the batched pipeline measures each segment's compression ratio on its own text, which lets a
    window of looping text through the repetition rule piece by piece."""
    from faster_whisper.transcribe import get_compression_ratio

    ratio = get_compression_ratio("".join(segment.text for segment in segments).strip())
    return [replace(_decoded(segment), compression_ratio=ratio) for segment in segments]


def _start_times(clips: list, starts_s: list[float] | None) -> list[float]:
    """Each clip's start time in the recording (0.0 when not given); one per clip."""
    starts_s = [0.0] * len(clips) if starts_s is None else list(starts_s)
    if len(starts_s) != len(clips):
        raise ValueError(f"{len(clips)} clips but {len(starts_s)} start times")
    return starts_s


def load_engine(engine: str = DEFAULT_ENGINE, model: str = DEFAULT_MODEL, *, beam_size: int = DEFAULT_BEAM_SIZE,
                threads: int = DECODER_THREADS, compute_type: str = "float32") -> Transcriber:
    """Load a speech engine: "openai-whisper" or "faster-whisper", a model name (tiny.en) or path.

    `threads`: the decoder's (DECODER_THREADS; other counts are for measuring). `compute_type` applies
    to faster-whisper only.
    Raises ModelError with a one-line message for an unknown engine, model name or unusable path.
    """
    _check_engine(engine)
    _passive_openmp_threads()
    if engine == "openai-whisper":
        return OpenAIWhisper(model, beam_size=beam_size, threads=threads)
    return FasterWhisper(model, beam_size=beam_size, threads=threads, compute_type=compute_type)


def _passive_openmp_threads() -> None:
    """Let idle OpenMP threads sleep instead of spinning, unless the user chose otherwise.

    Both engines decode with OpenMP (libgomp). Spinning threads are a little faster on an idle
    machine, but on a busy one (the webhook, another audit) a thread spinning at a barrier holds the
    core its partner needs: measured on 2 busy cores, a clip took 5-20 s with 2 spinning threads,
    2.3 s with 2 sleeping ones and 0.85 s idle either way. Read once, when libgomp loads: this must
    run before torch or ctranslate2 is imported.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise ModelError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")


@functools.lru_cache(maxsize=4)
def shared_engine(engine: str = DEFAULT_ENGINE, model: str = DEFAULT_MODEL, *, beam_size: int = DEFAULT_BEAM_SIZE,
                  threads: int = DECODER_THREADS, compute_type: str = "float32") -> Transcriber:
    """`load_engine`, but loaded once per process: call it inside worker processes with plain arguments.

    Convert the checkpoint in the parent first (`prepare_model`), so workers do not all convert it.
    """
    return load_engine(engine, model, beam_size=beam_size, threads=threads, compute_type=compute_type)


def prepare_model(engine: str = DEFAULT_ENGINE, model: str = DEFAULT_MODEL) -> None:
    """Check the engine and model exist and do the one-off conversion, without loading the model."""
    from audits.weights import ct2_model_dir, openai_whisper_checkpoint

    _check_engine(engine)
    if engine == "faster-whisper":
        ct2_model_dir(model)
    elif not os.path.isfile(os.path.expanduser(str(model))):
        openai_whisper_checkpoint(model)
