"""Deep Memory settings: read (with the FR-6 gate) and update (validated, saved to the TOML file).

Availability (DESIGN.md "Settings"): with the default backend `deeplake`, Deep Memory is
available exactly when the store is on DeepLake Cloud (`available == is_cloud`, FR-6/SC-7); with
backend `local` it is available on local stores too.
"""

from __future__ import annotations

from typing import Any

from dmdesk import secrets
from dmdesk.config import EDITABLE_FIELDS, DmdeskConfig, load_config, save_config_file
from dmdesk.domain.errors import InvalidSettings
from dmdesk.domain.models import DeepMemorySettingsResponse
from dmdesk.vectorstore.service import VectorStoreService

GATE_MESSAGE = (
    "Deep Memory is only available with DeepLake Cloud: {what}. Point dmdesk at a DeepLake "
    "Cloud store (hub://org/dataset), or set DMDESK_DEEP_MEMORY_BACKEND=local to use dmdesk's "
    "local Deep Memory engine (environment, or `dmdesk settings --set "
    "deep_memory_backend=local`), then restart dmdesk."
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


def generator_description(config: DmdeskConfig) -> str:
    """Which LLM writes the questions: the configured OpenAI-compatible one, else the local
    model."""
    if config.llm_base_url or secrets.get_secret(secrets.OPENAI_API_KEY):
        return f"{config.llm_model} at {config.llm_base_url or 'api.openai.com'}"
    from dmdesk.llm import local_generator

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
        llm_key_configured=secrets.get_secret(secrets.OPENAI_API_KEY) is not None,
        activeloop_token_configured=secrets.get_secret(secrets.ACTIVELOOP_TOKEN) is not None,
        is_cloud=is_cloud,
        available=available,
        unavailable_reason=reason,
        generator=generator_description(config),
    )


def update_settings(config: DmdeskConfig, changes: dict[str, Any]) -> DmdeskConfig:
    """Validate `changes` against the whole configuration, then save them. Nothing is written
    when any value is invalid. Returns the new effective configuration (environment variables
    still win over the file, as everywhere)."""
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise InvalidSettings(f"Unknown setting(s): {', '.join(sorted(unknown))}")
    merged = {k: getattr(config, k) for k in EDITABLE_FIELDS} | changes
    load_config(**{k: v for k, v in merged.items() if v is not None})  # raises InvalidSettings
    save_config_file(changes)
    return load_config()
