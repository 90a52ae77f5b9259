"""Library notices that are not the user's business, kept out of every peftlab process.

bitsandbytes (0.50) logs at import, on CPUs with AVX512-BF16, that it could not load a faster
4-bit CPU kernel from the optional `kernels` package. peft imports bitsandbytes whenever it is
installed, so every run, tuning trial and web request printed it, 4-bit or not. 4-bit runs work
without that package (bitsandbytes falls back to its own kernel); README's Precision section says
how to get the faster one. The filter is installed when `peftlab` is imported, before any library.
"""

from __future__ import annotations

import logging

# (logger, the start of the message) of each notice dropped
QUIET = (("bitsandbytes.backends.cpu.ops", "Failed to load CPU gemm_4bit_forward from kernels-community"),)


class _Drop(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def quiet_library_notices() -> None:
    for name, prefix in QUIET:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Drop) and f.prefix == prefix for f in logger.filters):
            logger.addFilter(_Drop(prefix))
