"""The Deep Memory backend a run's settings name: DeepLake Cloud's managed engine (`deeplake`)
or dmdesk's own local engine (`local`). It sits above both backends and their shared interface
(`dmdesk.deepmemory.base`), so neither imports the other or the factory."""

from __future__ import annotations

from typing import Any

from dmdesk import secrets
from dmdesk.config import DmdeskConfig
from dmdesk.deepmemory.base import TrainingBackend
from dmdesk.deepmemory.cloud import DeepLakeCloudBackend
from dmdesk.deepmemory.local import LocalEngineBackend
from dmdesk.domain.errors import InvalidSettings
from dmdesk.embeddings import make_embedding
from dmdesk.vectorstore.service import open_store


def make_backend(name: str, config: DmdeskConfig) -> TrainingBackend:
    def embedding() -> Any:
        return make_embedding(config.embedding, base_url=config.llm_base_url)

    if name == "deeplake":
        return DeepLakeCloudBackend(
            lambda: secrets.get_secret(secrets.ACTIVELOOP_TOKEN),
            embedding,
            poll_interval_s=config.cloud_poll_interval_s,
            patience_s=config.cloud_patience_s,
            deadline_s=config.cloud_deadline_s,
        )
    if name == "local":
        return LocalEngineBackend(config.data_dir, embedding, open_store)
    raise InvalidSettings(f"Unknown Deep Memory backend {name!r}: use 'deeplake' or 'local'.")
