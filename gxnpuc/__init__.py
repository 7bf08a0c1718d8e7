"""gxnpuc: an open compiler for GX8002-class NPUs (fp16 compute, 8-bit compressed weights)."""

__version__ = "0.1.0"
