"""Step 1: load landing extracts into the ``raw`` schema, every row loaded or rejected.

The rooms, in the order a file meets them:

- ``landing``: what is under the landing root (files to load, paths ignored and why);
- ``loader``: the orchestrator: ``run_ingest``, the load audit, which path loads each file;
- ``file_load``: what the loader hands a path (``FileLoad``) and gets back (``PathResult``);
- the three load paths, named by their method: ``binary_path`` (pyarrow, vectorised checks,
  binary COPY; the fastest, for CSV), ``sql_path`` (COPY into a staging table, checks in
  SQL; for the CSV files the binary path hands back), ``row_path`` (each record in Python;
  Parquet, JSON lines, small CSV files and what the others hand back);
- ``row_contract``: what a valid row is and every reject reason, used by all three paths
  (a leaf: no database);
- ``rejects``: the one writer of ``tierflow_meta.rejects``;
- ``readers``: streaming readers of the landing formats;
- the binary path's parts: ``binary_encoding`` (binary COPY fields), ``key_hashing`` (key
  sets for foreign keys, duplicate keys in bounded memory), ``arrow_views``;
- ``schema``: the raw tables' DDL (``ensure_schema``; the meta tables are ``tierflow.meta``).
"""

from tierflow.ingest.file_load import IngestError
from tierflow.ingest.loader import IngestReport, run_ingest

__all__ = ["IngestError", "IngestReport", "run_ingest"]
