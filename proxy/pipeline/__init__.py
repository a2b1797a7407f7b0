"""The memory pipeline shared by every front end (see :mod:`proxy.pipeline.pipeline`)."""

from proxy.pipeline.blocks import MemoryBlocks, MemoryOutcome
from proxy.pipeline.capture import ReplyCapture
from proxy.pipeline.pipeline import Exchange, MemoryPipeline, StreamTranslator

__all__ = ["Exchange", "MemoryBlocks", "MemoryOutcome", "MemoryPipeline", "ReplyCapture", "StreamTranslator"]
