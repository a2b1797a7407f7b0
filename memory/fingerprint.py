"""Which embedding space a stored vector lives in.

An archive's vectors are reused on import only when the importing engine
would have computed the same vectors: the same model, weights and the same
blend of whole text and sentences (:mod:`memory.encoding`) and the same
recipe for the sentences (``memory.embedding_recipe``). The fingerprint
is a digest of the model's name, a probe text encoded through the engine's
own encoding (rounded, so float noise between machines does not matter) and
the encoding's parameters. Anything that changes the vectors changes it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from memory.embedder import Embedder
from memory.encoding import SENTENCE_WEIGHT

PROBE = "memproxy fingerprint probe. The quick brown fox jumps over the lazy dog! Ünïcödé, 12345."
DECIMALS = 4


@dataclass(frozen=True, slots=True)
class EmbedderId:
    name: str
    fingerprint: str
    dimensions: int


_cache: dict[tuple[str, str], EmbedderId] = {}  # by model path and recipe


async def embedder_id(embedder: Embedder) -> EmbedderId:
    key = (embedder.model_path, embedder.recipe)
    cached = _cache.get(key)
    if cached is not None:
        return cached
    vector = (await embedder.embed_memories([PROBE]))[0]
    rounded = np.round(np.asarray(vector, dtype=np.float64), DECIMALS) + 0.0  # no negative zeros
    path = Path(embedder.model_path)
    name = path.parent.name if path.name == "model" else path.name  # the packaged model sits in .../<package>/model
    digest = hashlib.sha256()
    digest.update(f"{name}\0{SENTENCE_WEIGHT}\0{len(rounded)}\0".encode())
    if embedder.recipe != "blend":  # blend: the digest as before this setting existed
        digest.update(f"{embedder.recipe}\0".encode())
    digest.update(" ".join(f"{x:.{DECIMALS}f}" for x in rounded).encode())
    found = EmbedderId(name=name, fingerprint=digest.hexdigest()[:32], dimensions=int(len(rounded)))
    _cache[key] = found
    return found
