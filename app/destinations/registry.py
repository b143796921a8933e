"""Every destination the relay knows, in one table.

A destination is a module with a config (read from ``Settings``), a class that sends, and a
``Kind`` naming both; adding one is that module and one line in ``KINDS``. Everything else
(endpoints a mapping may name, examples, rate limiters, send loops) is derived from the table.
"""

from __future__ import annotations

from app.destinations import yotpo, zendesk
from app.destinations.base import Kind

KINDS: tuple[Kind, ...] = (zendesk.KIND, yotpo.KIND)
BY_NAME: dict[str, Kind] = {kind.name: kind for kind in KINDS}
