"""The memory engine's settings (the ``memory:`` section of the config).

Owned here, next to the code that reads them; ``proxy.config`` only
assembles them into the server's settings. Every key is documented in
``config.example.yaml``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

EmbeddingRuntime = Literal["auto", "onnx", "onnx-int8", "openvino", "torch", "torch-bf16"]


class SchedulerSettings(BaseModel):
    """The MemScheduler's policy (see memory/scheduler.py)."""

    model_config = ConfigDict(extra="forbid")


    enabled: bool = True
    interval_s: float = 60.0  # seconds between passes
    window_requests: int = 20  # recent recalls per owner considered for promotion
    promote_min_recalls: int = 5  # recalled in at least this many of them -> core (within the cap)
    demote_idle_s: float = 604_800.0  # a promoted core memory not recalled for this long -> recall
    episodic_ttl_s: float = 0.0  # archive episodic turns older than this; 0: never


class ExtractorSettings(BaseModel):
    """Optional LLM fact extraction on the write path (see memory/extractor.py)."""

    model_config = ConfigDict(extra="forbid")


    model: str | None = None  # any litellm model name (e.g. openai/gpt-4o-mini); None: off
    base_url: str | None = None  # litellm's api_base (an OpenAI-compatible server, ...)
    api_key: str | None = None  # None: litellm's provider environment variable
    timeout_s: float = 30.0  # whole-call timeout; exceeded -> the turn gets no facts
    max_facts: int = 8  # most facts kept from one turn


class RedactSettings(BaseModel):
    """What is redacted from memory text before it is embedded or stored (see memory/redact.py)."""

    model_config = ConfigDict(extra="forbid")

    credentials: bool = True  # API keys, tokens, passwords, private keys, card numbers (Luhn-checked)
    pii: list[Literal["email", "phone", "iban", "address"]] = Field(default_factory=list)


class MemoryLimits(BaseModel):
    """Caps on one memory (see memory/limits.py); over a cap -> 400 (a chat turn is clipped)."""

    model_config = ConfigDict(extra="forbid")

    max_content_chars: int = Field(default=32_768, ge=1)
    max_metadata_bytes: int = Field(default=16_384, ge=2)
    max_metadata_depth: int = Field(default=8, ge=1)
    max_batch: int = Field(default=1_000, ge=1)  # memories in one POST /v1/memories


class CoherenceSettings(BaseModel):
    """Following other processes' changes over a shared Chroma server (see memory/coherence.py)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True  # with memory.chroma_url; off: no vectors kept in process, recall queries the store
    interval_ms: int = Field(default=250, ge=10)  # the change log is polled this often
    max_staleness_ms: int = Field(default=1_000, ge=10)  # a request waits for a poll when the last is older
    clock_skew_ms: int = Field(default=2_000, ge=0)  # how far processes' clocks (and a write's commit) may lag


class SnapshotSettings(BaseModel):
    """Per-owner recall index snapshots under <data_dir>/index (see memory/snapshot.py)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    interval_s: float = Field(default=300.0, ge=0)  # owners changed since their last save are saved this often
    warm_owners: int = Field(default=8, ge=0)  # most recently saved owners loaded at startup, in the background


class MemorySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default_mode: Literal["on", "off", "read", "write"] = "on"
    recall_deadline_ms: int = 200  # the recall's own time, from when it starts (memory/recallgate.py)
    recall_queue_ms: int = Field(default=2_000, ge=0)  # longest a request waits for its recall to start; then none
    token_budget: int = 1024
    max_items: int = 32
    min_score: float = 0.35
    placement: Literal["system", "last_user"] = "system"
    write_enabled: bool = True
    embedding_model: str | None = None  # default: the packaged all-MiniLM-L6-v2
    # runtime of each embedding lane (memory/embedder.py): auto | onnx | onnx-int8 | openvino | torch | torch-bf16
    embedding_query_runtime: EmbeddingRuntime = "auto"  # auto: onnx
    embedding_bulk_runtime: EmbeddingRuntime = "auto"  # auto: openvino (torch if it cannot load)
    embedding_bulk_threads: int = Field(default=1, ge=1)  # bulk lane threads (torch: batches side by side)
    # a memory's stored vector (memory/embedder.py): blend (each sentence embedded alone) | late (long texts pooled late)
    embedding_recipe: Literal["blend", "late"] = "blend"
    embedding_cache_dir: str | None = None  # the exported ONNX files; default: ~/.cache/memproxy
    store: Literal["chroma"] = "chroma"
    chroma_path: str | None = None  # default: <data_dir>/chroma
    chroma_url: str | None = None  # a Chroma server (``chroma run``) instead of the embedded store
    # without chroma_url: the store in this process (inline) or a private ``chroma run`` child
    # (memory/chroma_child.py); auto: child on Linux (where it dies with the proxy), else inline
    chroma_process: Literal["auto", "inline", "child"] = "auto"
    write_queue_size: int = 256  # journaled turns waiting for the writer before new replies wait (backpressure)
    write_backpressure_ms: int = 2_000  # longest a reply waits for room; then journaled anyway, reported degraded
    write_linger_ms: int = 100
    # embed the next batch while one is stored (memory/writer.py Stages); auto: on unless Chroma runs in this process
    write_pipeline: Literal["auto", "on", "off"] = "auto"
    core_token_budget: int = 1024  # most tokens (cl100k) of core memories injected on every request
    profile_token_budget: int = Field(default=384, ge=0)  # the user's self-disclosures injected with the core block; 0: off
    index_cache_memories: int = 500_000  # memories kept in the in-process recall indexes, over all owners
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    extractor: ExtractorSettings = Field(default_factory=ExtractorSettings)
    redact: RedactSettings = Field(default_factory=RedactSettings)
    limits: MemoryLimits = Field(default_factory=MemoryLimits)
    coherence: CoherenceSettings = Field(default_factory=CoherenceSettings)
    snapshot: SnapshotSettings = Field(default_factory=SnapshotSettings)
