"""The embedding model as an ONNX file, built offline from the packaged model.

The ONNX file is exported from the local sentence-transformers directory
(``torch.onnx``; never a download) the first time a process asks for it, into
a per-machine cache directory, and reused by every later process:

- the file name carries a digest of what it is built from (the model files'
  names, sizes and modification times, the torch and onnx versions and the
  variant), so a different model or toolchain gets its own file;
- the build runs under a file lock (several workers may start at once: one
  builds, the others wait and then load its file) and writes to a temporary
  name that is renamed into place, so a reader never sees half a file;
- ``int8`` is the fp32 file with dynamic int8 quantisation of the MatMul
  weights (per channel), built from the fp32 file.

Only this module imports torch on the ONNX path, and only to build.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

Variant = Literal["fp32", "int8"]
FORMAT = 1  # bump when the export itself changes (inputs, opset, quantisation options)
OPSET = 17
LOCK_TIMEOUT_S = 600.0
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT = "last_hidden_state"


def default_cache_dir() -> Path:
    """``$MEMPROXY_CACHE_DIR``, else ``$XDG_CACHE_HOME/memproxy``, else ``~/.cache/memproxy``."""
    explicit = os.environ.get("MEMPROXY_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "memproxy"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "-"


def _name(model_path: str) -> str:
    path = Path(model_path)
    return path.parent.name if path.name == "model" else path.name  # the packaged model sits in .../<package>/model


def model_digest(model_path: str | Path, variant: Variant) -> str:
    """What the ONNX file is built from, as a short digest (no file is read in full)."""
    root = Path(model_path)
    tools = "\0".join(_version(name) for name in ("torch", "onnx", "onnxruntime", "transformers"))
    h = hashlib.sha256(f"{FORMAT}\0{OPSET}\0{variant}\0{tools}\0".encode())
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        stat = path.stat()
        h.update(f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _export_fp32(model_path: str, target: Path) -> None:
    """Export the transformer (token ids -> last hidden state) with dynamic batch and length."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(model_path, attn_implementation="eager").eval()

    class Hidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    token_type_ids: torch.Tensor) -> torch.Tensor:
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.last_hidden_state

    example = torch.ones(2, 8, dtype=torch.long)
    axes = {name: {0: "batch", 1: "tokens"} for name in (*INPUTS, OUTPUT)}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shapes it treats as dynamic anyway
        torch.onnx.export(
            Hidden(), (example, example, torch.zeros_like(example)), str(target),
            input_names=list(INPUTS), output_names=[OUTPUT], dynamic_axes=axes,
            opset_version=OPSET, dynamo=False,
        )


def _quantize(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=["MatMul"])


def _atomic_build(target: Path, build: Callable[[Path], None]) -> None:
    """``build(tmp)`` into a temporary file next to ``target``, then rename it into place."""
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        build(tmp)
        tmp.chmod(0o644)  # mkstemp made it private; the cache is the machine's
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def ensure_file(target: Path, build: Callable[[Path], None], timeout_s: float = LOCK_TIMEOUT_S) -> Path:
    """``target``, built once by ``build(tmp_path)`` under a lock if it does not exist yet."""
    if target.exists():
        return target
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock", timeout=timeout_s):
        if not target.exists():  # another process may have built it while we waited
            log.info("building %s (once per machine)", target)
            _atomic_build(target, build)
    return target


def onnx_model(model_path: str, variant: Variant = "fp32", cache_dir: str | Path | None = None) -> Path:
    """The ONNX file of ``model_path`` in ``variant``, built into the cache on first use."""
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    fp32 = root / "onnx" / f"{_name(model_path)}-{model_digest(model_path, 'fp32')}-fp32.onnx"
    ensure_file(fp32, lambda tmp: _export_fp32(model_path, tmp))
    if variant == "fp32":
        return fp32
    int8 = root / "onnx" / f"{_name(model_path)}-{model_digest(model_path, 'int8')}-int8.onnx"
    return ensure_file(int8, lambda tmp: _quantize(fp32, tmp))
