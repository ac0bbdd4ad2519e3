"""ingest: raw interaction logs (any layout, any column names) -> a canonical, versioned dataset
directory, in phases: reading (with the background byte check), encoding, rejects, the numpy
kernels (sort, dedupe, ranks), sessions, attribute tables and writing (see `run`)."""

from persotool.stages import Stage

STAGE = Stage(name="ingest", kind="dataset", config="IngestConfig", result="Dataset", source="sources")
