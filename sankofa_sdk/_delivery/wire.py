"""What goes on the wire for a batch body: as it is, or gzip-compressed (a policy, not I/O)."""

from __future__ import annotations

import gzip
from urllib.parse import urlsplit

from .._log import logger
from .._options import Options, is_loopback_host

GZIP_AUTO_MIN_BYTES = 32 * 1024
"""With ``gzip=None``, bodies from this size up are compressed for a remote engine."""


class BodyEncoder:
    """``gzip=True`` always compresses, ``False`` never; ``None`` compresses large bodies for a
    remote engine. To an engine on this machine compressing would only cost CPU (about 1 µs per
    operation), so ``None`` skips it there."""

    def __init__(self, options: Options, url: str) -> None:
        self._wanted = options.gzip
        self._auto = not is_loopback_host(urlsplit(url).hostname or "")

    def encode(self, body: bytes) -> tuple[bytes, bool]:
        """The bytes to send for ``body`` and whether they are gzip-compressed."""
        wanted = self._wanted
        if wanted is False or (
            wanted is None and (not self._auto or len(body) < GZIP_AUTO_MIN_BYTES)
        ):
            return body, False
        try:
            return gzip.compress(body, compresslevel=1 if wanted is None else 6), True
        except Exception:  # compression failing must not cost the batch: send it as it is
            logger.warning("gzip failed; sending the batch uncompressed")
            return body, False
