"""Identifiers for requests and deliveries."""

from __future__ import annotations

import random


def new_id() -> str:
    """A random 128-bit id as 32 hex digits.

    Not ``uuid4``: its ``os.urandom`` system call was a tenth of the ingest CPU on the
    benchmark machine. Ids need to be unique, not secret; ``random`` is seeded from the
    system at start and again after a fork.
    """
    return f"{random.getrandbits(128):032x}"  # nosec B311 - unique ids, not secrets
