"""CRM export: customers (HubSpot-ready CSV), consent history with proof, zone events, deliveries and
opt-outs, as CSV or Segment-spec NDJSON, incremental with an opaque cursor and streamed in constant
memory.

Pure renderers: ``csv_rows``, ``segment``, ``cursor``, ``writers``. Adapters: ``sources`` (keyset reads),
``kinds`` and ``record_builders`` (what each kind reads, how its rows become records) and ``pipeline``
(plan -> chunks -> file). Exports read; they never write to the tables they export.
"""

from campaigns.export.cursor import CursorError, decode_cursor, encode_cursor
from campaigns.export.kinds import KIND_NAMES, UnknownKind
from campaigns.export.sources import ExportPlan, count_rows, plan_export
from campaigns.export.writers import FORMATS, MEDIA_TYPES

__all__ = [
    "FORMATS",
    "KIND_NAMES",
    "MEDIA_TYPES",
    "CursorError",
    "ExportPlan",
    "UnknownKind",
    "count_rows",
    "decode_cursor",
    "encode_cursor",
    "plan_export",
]
