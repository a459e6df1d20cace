"""Step 1: load landing extracts into the ``raw`` schema, every row loaded or rejected."""

from tierflow.ingest.loader import IngestError, IngestReport, run_ingest

__all__ = ["IngestError", "IngestReport", "run_ingest"]
