"""Privacy at ingest: user ids replaced by a keyed HMAC (the key never written anywhere), and
consent (a user who opted out anywhere is removed everywhere, rejects included)."""

from __future__ import annotations

import hashlib
import hmac
import os

import numpy as np

from persotool.errors import ConfigError
from persotool.stages.ingest.config import IngestConfig

MIN_KEY_BYTES = 16  # an HMAC key shorter than this can be found by trying keys


def pseudonymizer(spec: IngestConfig):
    key = os.environ.get(spec.pseudonym_key_env)
    if not key:
        raise ConfigError(
            f"`pseudonymize` needs a secret key in the environment variable {spec.pseudonym_key_env} "
            "(it is never written anywhere)"
        )
    key_bytes = key.encode()
    if len(key_bytes) < MIN_KEY_BYTES:
        raise ConfigError(
            f"the pseudonym key in {spec.pseudonym_key_env} is {len(key_bytes)} bytes; use at least {MIN_KEY_BYTES} "
            "random bytes (e.g. python -c 'import secrets; print(secrets.token_hex(32))'), or ids can be guessed back"
        )

    def apply(ids: list[str]) -> list[str]:
        return [hmac.new(key_bytes, i.encode(), hashlib.sha256).hexdigest()[:32] for i in ids]

    return apply


def opted_out(coded, rows: int) -> tuple[np.ndarray, int]:
    """Consent: a user who opted out anywhere is removed everywhere, rejects included. Returns the
    rows to drop and the number of users who opted out."""
    gone = np.zeros(rows, dtype=bool)
    if coded.consent is None:
        return gone, 0
    refused = np.unique(coded.user[(coded.consent == 0) & (coded.user >= 0)])
    if len(refused):
        refused_mask = np.zeros(len(coded.users), dtype=bool)
        refused_mask[refused] = True
        gone = (coded.user >= 0) & refused_mask[np.maximum(coded.user, 0)]
    return gone, len(refused)
