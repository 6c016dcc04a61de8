"""What every service needs, wired once: configuration, database, and the factories of the
parts that talk to the outside (vector store, LLM, Deep Memory backend). Tests replace a factory
to plug a test backend in; nothing else is mocked."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from dmdesk import secrets
from dmdesk.config import DmdeskConfig, load_config
from dmdesk.db.migrate import ensure_schema
from dmdesk.db.models import utcnow
from dmdesk.db.session import make_engine, make_session_factory
from dmdesk.deepmemory.backends import make_backend
from dmdesk.deepmemory.base import TrainingBackend
from dmdesk.domain.errors import DatabaseError
from dmdesk.domain.snapshot import RunSnapshot
from dmdesk.llm.base import QuestionGenerator
from dmdesk.llm.local_generator import LocalGenerator
from dmdesk.vectorstore.service import VectorStoreService, open_store


def new_owner_token() -> str:
    """Identifies the process (and the job) that runs a run: host:pid:random."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def default_vector_store_factory(path: str | None) -> VectorStoreService:
    return open_store(path)


def default_generator_factory(snapshot: RunSnapshot, config: DmdeskConfig) -> QuestionGenerator:
    """The OpenAI-compatible generator when a key or a base URL is configured; else the local
    model (offline)."""
    # late: the openai SDK costs ~0.5 s of import; the local writer's runs never need it
    from dmdesk.llm.openai_generator import OpenAIGenerator

    if not snapshot.llm_base_url and not secrets.get_secret(secrets.OPENAI_API_KEY):
        return LocalGenerator()
    return OpenAIGenerator(
        model=snapshot.need(snapshot.llm_model, "LLM model"),
        base_url=snapshot.llm_base_url,
        api_key=secrets.get_secret(secrets.OPENAI_API_KEY),
        max_retries=config.llm_max_retries,
        timeout_s=config.llm_timeout_s,
        concurrency=snapshot.need(snapshot.generation_concurrency, "generation concurrency"),
        rate_limit_patience_s=config.llm_rate_limit_patience_s,
    )


@dataclass
class ServiceContext:
    config: DmdeskConfig
    engine: Engine
    sessions: sessionmaker[Session]
    vector_store_factory: Callable[[str | None], VectorStoreService] = default_vector_store_factory
    generator_factory: Callable[[RunSnapshot, DmdeskConfig], QuestionGenerator] = (
        default_generator_factory
    )
    backend_factory: Callable[[str, DmdeskConfig], TrainingBackend] = make_backend
    clock: Callable[[], datetime] = utcnow
    owner: str = field(default_factory=new_owner_token)

    def dispose(self) -> None:
        self.engine.dispose()


def build_context(config: DmdeskConfig | None = None, **overrides: Any) -> ServiceContext:
    """Load the configuration, open the database and bring it to the latest schema."""
    config = config or load_config()
    if not config.database_url:  # the default database lives in dmdesk's own data folder
        try:
            config.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseError(
                f"Cannot create dmdesk's data folder {config.data_dir}: {exc.strerror}"
            ) from None
    engine = make_engine(config.effective_database_url)
    ensure_schema(engine)
    return ServiceContext(
        config=config, engine=engine, sessions=make_session_factory(engine), **overrides
    )
