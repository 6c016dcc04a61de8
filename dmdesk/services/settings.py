"""Deep Memory settings: read (with the FR-6 gate) and update (validated, saved to the TOML file).

Availability (DESIGN.md "Settings"): with the default backend `deeplake`, Deep Memory is
available exactly when the store is on DeepLake Cloud (`available == is_cloud`, FR-6/SC-7); with
backend `local` it is available on local stores too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dmdesk import secrets
from dmdesk.config import (
    EDITABLE_FIELDS,
    DmdeskConfig,
    SettingsFileBroken,
    load_config,
    save_config_file,
)
from dmdesk.domain.errors import InvalidSettings, LLMError
from dmdesk.domain.models import DeepMemorySettingsResponse
from dmdesk.llm import local_generator
from dmdesk.vectorstore.service import VectorStoreService

GATE_MESSAGE = (
    "Deep Memory is only available with DeepLake Cloud: {what}. Point dmdesk at a DeepLake "
    "Cloud store (hub://org/dataset), or choose dmdesk's local Deep Memory engine (backend "
    '"local" in Settings, or DMDESK_DEEP_MEMORY_BACKEND=local).'
)


def availability(config: DmdeskConfig) -> tuple[bool, bool, str | None]:
    is_cloud = VectorStoreService._is_cloud(config.vector_store_path)
    if config.deep_memory_backend == "local":
        if not config.vector_store_path:
            return is_cloud, False, "No vector store is configured (DMDESK_VECTOR_STORE_PATH)."
        return is_cloud, True, None
    if is_cloud:
        return True, True, None
    what = (
        f"the vector store {config.vector_store_path} is not a hub:// store"
        if config.vector_store_path
        else "no vector store is configured (DMDESK_VECTOR_STORE_PATH)"
    )
    return False, False, GATE_MESSAGE.format(what=what)


def uses_local_generator(config: DmdeskConfig) -> bool:
    """With neither an LLM URL nor an API key, dmdesk's local model writes the questions."""
    return not (config.llm_base_url or secrets.get_secret(secrets.OPENAI_API_KEY))


def generator_description(config: DmdeskConfig) -> str:
    """Which LLM writes the questions: the configured OpenAI-compatible one, else the local
    model."""
    if not uses_local_generator(config):
        return f"{config.llm_model} at {config.llm_base_url or 'api.openai.com'}"

    if local_generator.available():
        return local_generator.MODEL_LABEL
    return "none: set OPENAI_API_KEY or DMDESK_LLM_BASE_URL (the local model is not installed)"


def get_settings(config: DmdeskConfig) -> DeepMemorySettingsResponse:
    is_cloud, available, reason = availability(config)
    return DeepMemorySettingsResponse(
        llm_model=config.llm_model,
        llm_base_url=config.llm_base_url,
        questions_per_chunk=config.questions_per_chunk,
        generation_concurrency=config.generation_concurrency,
        chunk_limit=config.chunk_limit,
        embedding=config.embedding,
        vector_store_path=config.vector_store_path,
        deep_memory_backend=config.deep_memory_backend,
        stale_after_s=config.stale_after_s,
        llm_max_retries=config.llm_max_retries,
        llm_timeout_s=config.llm_timeout_s,
        budget_usd=config.budget_usd,
        llm_mode=config.llm_mode,
        llm_key_configured=secrets.get_secret(secrets.OPENAI_API_KEY) is not None,
        activeloop_token_configured=secrets.get_secret(secrets.ACTIVELOOP_TOKEN) is not None,
        is_cloud=is_cloud,
        available=available,
        unavailable_reason=reason,
        generator=generator_description(config),
        generator_is_local=uses_local_generator(config),
    )


def update_settings(
    config: DmdeskConfig, changes: dict[str, Any], *, replace_broken: bool = False
) -> DmdeskConfig:
    """Validate `changes` against the whole configuration, then save them — typed, as the
    validated configuration holds them (25, not "25"). Nothing is written when any value is
    invalid: a number out of range is refused with its range, never clamped. A new local store
    path must exist. Returns the new effective configuration (environment variables still win
    over the file, as everywhere; :func:`dmdesk.config.env_overridden` names those keys). A
    settings file that cannot be read is left as it is (SettingsFileBroken) unless
    `replace_broken`: then it is kept as a backup and replaced."""
    validated = validate_changes(config, changes)
    save_config_file(
        {k: None if v is None else getattr(validated, k) for k, v in changes.items()},
        replace_broken=replace_broken,
    )
    return load_config()


def validate_changes(config: DmdeskConfig, changes: dict[str, Any]) -> DmdeskConfig:
    """The configuration `changes` would give, or `InvalidSettings` naming each bad field.
    Writes nothing (the window checks its fields with it before saving in a thread)."""
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise InvalidSettings(
            f"Unknown setting(s): {', '.join(sorted(unknown))}. The settings are: "
            f"{', '.join(EDITABLE_FIELDS)}."
        )
    merged = {k: getattr(config, k) for k in EDITABLE_FIELDS} | changes
    values = {k: v for k, v in merged.items() if v is not None}
    try:
        validated = load_config(**values)
    except SettingsFileBroken:  # the values are checked all the same; saving says the rest
        validated = load_config(use_file=False, **values)
    path = changes.get("vector_store_path")
    if path and not VectorStoreService._is_cloud(str(path)) and not Path(str(path)).exists():
        raise InvalidSettings(
            f"Invalid settings: vector_store_path: {path} does not exist (use an existing "
            "DeepLake folder, or hub://org/name for DeepLake Cloud)."
        )
    return validated


async def check_llm_connection(
    base_url: str | None, model: str, api_key: str | None, timeout_s: float = 15.0
) -> str:
    """One tiny chat completion (1 token) to the LLM the settings name: the sentence to show
    next to the field. Raises `LLMError` with what is wrong, in words (never the key).

    With neither a URL nor a key nothing is called: dmdesk's local model writes the questions.
    `api_key=None` falls back to the stored key (keyring or OPENAI_API_KEY), read in a thread.
    """
    import asyncio
    import time

    # late: the openai SDK costs ~0.5 s of import, only for a connection test
    import openai

    from dmdesk.llm.openai_generator import PLACEHOLDER_KEY

    if api_key is None:
        api_key = await asyncio.to_thread(secrets.get_secret, secrets.OPENAI_API_KEY)
    if not base_url and not api_key:
        return "No LLM is set: dmdesk's local model writes the questions (nothing to test)."
    if not model:
        raise LLMError("Name the LLM model first.")
    where = base_url or "api.openai.com"
    client = openai.AsyncOpenAI(
        base_url=base_url, api_key=api_key or PLACEHOLDER_KEY, timeout=timeout_s, max_retries=0
    )
    started = time.monotonic()
    try:
        await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Reply with OK."}], max_tokens=1
        )
    except openai.AuthenticationError:
        raise LLMError(f"{where} refused the API key (401).") from None
    except openai.PermissionDeniedError:
        raise LLMError(f"{where} denied this key access to {model} (403).") from None
    except openai.NotFoundError:
        raise LLMError(f"{where} does not know the model {model} (404).") from None
    except openai.RateLimitError:
        return f"Connected: {where} knows the key, but is rate-limiting it right now (429)."
    except openai.APITimeoutError:
        raise LLMError(f"{where} did not answer within {timeout_s:.0f} s.") from None
    except openai.APIConnectionError:
        raise LLMError(f"Cannot reach {where}: check the URL and the network.") from None
    except openai.APIStatusError as exc:
        raise LLMError(f"{where} answered {exc.status_code}: the request was refused.") from None
    finally:
        await client.close()
    elapsed_ms = (time.monotonic() - started) * 1000
    return f"Connected: {model} at {where} answered in {elapsed_ms:.0f} ms."
