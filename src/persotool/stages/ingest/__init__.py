"""Raw interaction logs -> a canonical, versioned dataset directory, in phases: reading (with the
background byte check), encoding, rejects, the numpy kernels (sort, dedupe, ranks), sessions,
attribute tables and writing. `ingest()` runs them in order (see `_run`)."""

from persotool.stages.ingest._columns import sort_unique, time_ranks
from persotool.stages.ingest._encode import REASON_TEXT, REASONS
from persotool.stages.ingest._rejects import REJECT_SCHEMA
from persotool.stages.ingest.run import INTERACTION_SCHEMA, MIN_KEY_BYTES, ingest, summary

__all__ = [
    "INTERACTION_SCHEMA",
    "MIN_KEY_BYTES",
    "REASONS",
    "REASON_TEXT",
    "REJECT_SCHEMA",
    "ingest",
    "sort_unique",
    "summary",
    "time_ranks",
]
