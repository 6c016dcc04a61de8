"""Configuration: environment variables over a TOML file in the user config dir.

Contract variables (DESIGN.md): DMDESK_DATA_DIR, DMDESK_DATABASE_URL, DMDESK_VECTOR_STORE_PATH,
DMDESK_DEEP_MEMORY_BACKEND, DMDESK_LLM_BASE_URL, DMDESK_LLM_MODEL, OPENAI_API_KEY, ACTIVELOOP_TOKEN,
DMDESK_EMBEDDING, DMDESK_QUESTIONS_PER_CHUNK, DMDESK_GENERATION_CONCURRENCY, DMDESK_STALE_AFTER_S.
Additions of ours: DMDESK_CHUNK_LIMIT (generate for the first N chunks only),
DMDESK_LLM_MAX_RETRIES, DMDESK_LLM_TIMEOUT_S, DMDESK_BUDGET_USD, DMDESK_LLM_MODE (online|batch),
DMDESK_BATCH_POLL_INTERVAL_S, DMDESK_BATCH_MAX_REQUESTS, and DMDESK_CONFIG_FILE (where the TOML
lives; default `<user config dir>/dmdesk/config.toml`).

Secrets are never fields of this object: they come from the environment or the OS keyring
(:mod:`dmdesk.secrets`) at the moment they are needed.
"""

from __future__ import annotations

import contextvars
import os
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import platformdirs
import tomli_w
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from dmdesk.domain.errors import InvalidSettings

APP_NAME = "dmdesk"
DEFAULT_LLM_MODEL = "gpt-4o-mini"

# Fields an admin may change from the GUI or `update_settings`; saved to the TOML file.
EDITABLE_FIELDS = (
    "vector_store_path",
    "deep_memory_backend",
    "llm_base_url",
    "llm_model",
    "embedding",
    "questions_per_chunk",
    "generation_concurrency",
    "chunk_limit",
    "stale_after_s",
    "llm_max_retries",
    "llm_timeout_s",
    "budget_usd",
    "llm_mode",
)


# The demo's settings (dmdesk.demo), in force only while the demo store is the store. The local
# LLM writes ~1 question/s: 40 chunks make a demo generation of about a minute; the default of
# 3 questions per chunk (one per style of dmdesk.llm.prompt.STYLES) would triple it.
DEMO_PROFILE: dict[str, Any] = {
    "deep_memory_backend": "local",
    "embedding": "local",
    "chunk_limit": 40,
    "questions_per_chunk": 1,
    "generation_concurrency": 2,
}


_USE_FILE: contextvars.ContextVar[bool] = contextvars.ContextVar("use_file", default=True)


def config_file() -> Path:
    explicit = os.environ.get("DMDESK_CONFIG_FILE")
    if explicit:
        return Path(explicit)
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"


class SettingsFileBroken(InvalidSettings):
    """The settings file cannot be read. It is never overwritten unless the admin chooses to
    replace it (save_config_file(..., replace_broken=True) keeps a backup first)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(
            f"The settings file {path} cannot be read: {reason}. Fix that line (or remove the "
            "file), or replace it with the settings you save now — the broken file is kept "
            "beside it as a backup (dmdesk settings --set … --replace-broken-file; in the "
            "window, Save offers it)."
        )
        self.path, self.reason = path, reason


def read_config_file(path: Path) -> dict[str, Any]:
    """The settings file's table ({} when there is none), or SettingsFileBroken saying which
    line is wrong (tomllib's message carries the line and column)."""
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SettingsFileBroken(path, f"not valid TOML ({exc})") from None
    except UnicodeDecodeError:
        raise SettingsFileBroken(path, "not UTF-8 text") from None
    except OSError as exc:
        raise SettingsFileBroken(path, exc.strerror or type(exc).__name__) from None


class _TomlSource(TomlConfigSettingsSource):
    """pydantic-settings' own TOML source on `config_file()`; a file that cannot be read is a
    SettingsFileBroken naming the line, not a traceback."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls, toml_file=config_file())

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        return read_config_file(Path(file_path))


def _no_control_characters(value: Any) -> Any:
    if isinstance(value, str) and any(ord(c) < 32 or ord(c) == 127 for c in value):
        bad = next(c for c in value if ord(c) < 32 or ord(c) == 127)
        what = {"\n": "a line break", "\r": "a line break", "\t": "a tab"}.get(
            bad, "a control character"
        )
        raise ValueError(f"contains {what}: a setting is one line of text")
    return value


class DmdeskConfig(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DMDESK_", extra="ignore", validate_default=True, env_ignore_empty=True
    )

    data_dir: Path = Field(default_factory=lambda: Path(platformdirs.user_data_dir(APP_NAME)))
    database_url: str | None = None
    vector_store_path: str | None = None
    deep_memory_backend: Literal["deeplake", "local"] = "deeplake"
    llm_base_url: str | None = None
    llm_model: str = DEFAULT_LLM_MODEL
    embedding: str = "openai:text-embedding-3-small"
    questions_per_chunk: int = Field(default=3, ge=1, le=20)
    generation_concurrency: int = Field(default=8, ge=1, le=256)
    chunk_limit: int | None = Field(default=None, ge=1)
    stale_after_s: float = Field(default=30.0, ge=3.0, le=86_400.0)
    llm_max_retries: int = Field(default=4, ge=0, le=20)
    llm_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    # How long the LLM may refuse every request (429) before a run fails (dmdesk.llm.pacing).
    llm_rate_limit_patience_s: float = Field(default=600.0, gt=0, le=86_400)
    # The most a generation run may spend on the LLM, in USD, over all its sessions
    # (dmdesk.jobs.generation); None: no limit. Needs a known price (dmdesk.llm.pricing).
    budget_usd: float | None = Field(default=None, gt=0)
    # "online": chat completions as the run goes; "batch": OpenAI's Batch API (about half the
    # price, results within 24 h; dmdesk.jobs.batch).
    llm_mode: Literal["online", "batch"] = "online"
    # Batch mode: how often open batches are polled; the most requests one batch holds (the
    # API allows 50,000 and 200 MB a file).
    batch_poll_interval_s: float = Field(default=30.0, gt=0, le=3600)
    batch_max_requests: int = Field(default=50_000, ge=1, le=50_000)
    # DeepLake Cloud training: how often a job is polled; how long DeepLake may stay unreachable
    # (or in a state dmdesk does not know) before the run fails; how long a job may train at all.
    cloud_poll_interval_s: float = Field(default=15.0, gt=0, le=3600)
    cloud_patience_s: float = Field(default=600.0, gt=0, le=86_400)
    cloud_deadline_s: float = Field(default=12 * 3600.0, gt=0, le=7 * 86_400)
    # Quality filters run after generation (dmdesk.services.quality); 0 turns a filter off.
    quality_filters: bool = True
    filter_roundtrip_rank: int = Field(default=10, ge=0)
    filter_generic_chunks: int = Field(default=10, ge=0)
    filter_generic_margin: float = Field(default=0.01, ge=0, le=1)
    filter_duplicate_similarity: float = Field(default=0.97, gt=0, le=1.01)

    @field_validator(
        "vector_store_path", "llm_base_url", "llm_model", "embedding", "database_url", mode="before"
    )
    @classmethod
    def _one_line(cls, v: Any) -> Any:
        return _no_control_characters(v)

    @field_validator("llm_model")
    @classmethod
    def _model_not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("the LLM model name is empty")
        return v.strip()

    @field_validator("embedding")
    @classmethod
    def _embedding_form(cls, v: str) -> str:
        if v != "local" and not (v.startswith("openai:") and len(v) > len("openai:")):
            raise ValueError("use 'local' or 'openai:<model>'")
        return v

    @field_validator("vector_store_path", "llm_base_url", "database_url")
    @classmethod
    def _blank_is_none(cls, v: str | None) -> str | None:
        return v.strip() or None if v is not None else None

    @field_validator("llm_base_url")
    @classmethod
    def _url_form(cls, v: str | None) -> str | None:
        if v is not None:
            scheme, sep, rest = v.partition("://")
            if scheme.lower() not in ("http", "https") or not sep or not rest.strip("/"):
                raise ValueError(f"{v!r} is not an http:// or https:// URL")
        return v

    @model_validator(mode="after")
    def _demo_profile(self) -> DmdeskConfig:
        """The demo's values apply while the demo store is the store — and only then: each one
        the admin did not set (environment, file, argument) takes the demo's value. Pointing
        the store elsewhere leaves none of them behind (a 40-chunk limit on a real store, …)."""
        if self.vector_store_path and Path(self.vector_store_path) == self.demo_store:
            for key, value in DEMO_PROFILE.items():
                if key not in self.model_fields_set:
                    setattr(self, key, value)
        return self

    @property
    def demo_store(self) -> Path:
        return Path(self.data_dir) / "demo-store"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        if not _USE_FILE.get():
            return (init_settings, env_settings)
        return (init_settings, env_settings, _TomlSource(settings_cls))

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'dmdesk.db'}"


@dataclass(frozen=True)
class SettingInfo:
    """One editable setting, for `dmdesk settings --help`, the README and the Settings card."""

    key: str
    kind: str  # "integer", "number", "text", "one of …"
    range: str  # "1–20", "any", "optional"
    env: str


_TEXT_FORMS = {
    "vector_store_path": "a local folder or hub://org/name",
    "llm_base_url": "an http(s):// URL",
    "llm_model": "not empty",
    "embedding": "local or openai:<model>",
}


def describe_settings() -> list[SettingInfo]:
    """Every editable setting with its type and range, read from the model's own constraints
    (so the help can never drift from what validation accepts)."""
    out = []
    for key in EDITABLE_FIELDS:
        field = DmdeskConfig.model_fields[key]
        ann = field.annotation
        optional = type(None) in get_args(ann)
        base = ann if get_origin(ann) is Literal or not optional else get_args(ann)[0]
        if get_origin(base) is Literal:
            kind, rng = "choice", "|".join(map(str, get_args(base)))
        else:
            kind = {int: "integer", float: "number"}.get(base, "text")  # type: ignore[arg-type]
            bounds = []
            for meta in field.metadata:
                for attr, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
                    value = getattr(meta, attr, None)
                    if value is not None:
                        bounds.append(f"{sign} {value:g}")
            rng = " and ".join(bounds) or _TEXT_FORMS.get(key, "any")
        if optional:
            rng += " (optional)"
        out.append(SettingInfo(key, kind, rng, f"DMDESK_{key.upper()}"))
    return out


def env_overridden(keys: Any) -> list[str]:
    """The keys among `keys` that an environment variable sets (and so wins over the file)."""
    return [k for k in keys if os.environ.get(f"DMDESK_{k.upper()}", "").strip()]


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "settings"
        env = f"DMDESK_{where.upper()}"
        msg = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{where} ({env}): {msg}")
    return "Invalid settings: " + "; ".join(parts)


def load_config(*, use_file: bool = True, **overrides: Any) -> DmdeskConfig:
    """Load the effective configuration; raise InvalidSettings with a readable message
    (SettingsFileBroken when the file cannot be read). `use_file=False`: the environment and
    the defaults only — for replacing a broken file with the admin's consent."""
    token = _USE_FILE.set(use_file)
    try:
        return DmdeskConfig(**overrides)
    except ValidationError as exc:
        raise InvalidSettings(_describe(exc)) from None
    finally:
        _USE_FILE.reset(token)


def save_config_file(changes: dict[str, Any], *, replace_broken: bool = False) -> Path:
    """Merge `changes` into the TOML file (only editable fields; None removes a key), written
    with tomli-w to a temporary file, flushed to disk, then renamed over the old one: a crash
    leaves the old file or the new one, never half of either. A file that cannot be read is
    never overwritten (SettingsFileBroken) unless `replace_broken`: then it is first renamed to
    `<name>.broken-<time>` and the new file holds only `changes`."""
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise InvalidSettings(f"Unknown setting(s): {', '.join(sorted(unknown))}")
    for key, value in changes.items():
        try:
            _no_control_characters(value)
        except ValueError as exc:
            raise InvalidSettings(
                f"Invalid settings: {key} (DMDESK_{key.upper()}): {exc}"
            ) from None
    path = config_file()
    try:
        current = read_config_file(path)
    except SettingsFileBroken:
        if not replace_broken:
            raise
        backup = path.with_name(f"{path.name}.broken-{time.strftime('%Y%m%d-%H%M%S')}")
        path.replace(backup)
        current = {}
    for key, value in changes.items():
        if value is None:
            current.pop(key, None)
        else:
            current[key] = str(value) if isinstance(value, Path) else value
    text = tomli_w.dumps(current)
    if tomllib.loads(text) != current:  # tomli-w writes what tomllib reads; said, not hoped
        raise InvalidSettings("These settings cannot be written as TOML; nothing was saved.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    return path
