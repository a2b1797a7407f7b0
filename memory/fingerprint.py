"""Which embedding space a stored vector lives in.

An archive's vectors are reused on import only when the importing engine
would have computed the same vectors: the same model, weights and the same
blend of whole text and sentences (:mod:`memory.encoding`). The fingerprint
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
from memory.encoding import SENTENCE_WEIGHT, encode

PROBE = "memproxy fingerprint probe. The quick brown fox jumps over the lazy dog! Ünïcödé, 12345."
DECIMALS = 4


@dataclass(frozen=True, slots=True)
class EmbedderId:
    name: str
    fingerprint: str
    dimensions: int


_cache: dict[str, EmbedderId] = {}  # by model path


async def embedder_id(embedder: Embedder) -> EmbedderId:
    cached = _cache.get(embedder.model_path)
    if cached is not None:
        return cached
    vector = (await encode(embedder.embed, [PROBE]))[0]
    rounded = np.round(np.asarray(vector, dtype=np.float64), DECIMALS) + 0.0  # no negative zeros
    path = Path(embedder.model_path)
    name = path.parent.name if path.name == "model" else path.name  # the packaged model sits in .../<package>/model
    digest = hashlib.sha256()
    digest.update(f"{name}\0{SENTENCE_WEIGHT}\0{len(rounded)}\0".encode())
    digest.update(" ".join(f"{x:.{DECIMALS}f}" for x in rounded).encode())
    found = EmbedderId(name=name, fingerprint=digest.hexdigest()[:32], dimensions=int(len(rounded)))
    _cache[embedder.model_path] = found
    return found
