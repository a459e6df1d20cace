"""tierflow: nightly customer tiering and resource allocation.

Data flows one way: ``ingest`` loads extracts into ``raw`` -> ``quality`` checks raw ->
dbt builds staging -> intermediate -> marts -> ``quality`` checks marts -> ``publish`` swaps
them into ``bi`` -> ``exports`` and the run summary.
"""

__version__ = "0.1.0"
