"""tierflow: nightly customer tiering and resource allocation.

Data flows one way, each step in its own package (``pipeline`` holds the steps the DAG
``customer_tiering`` runs, in this order): ``ingest`` loads extracts into ``raw`` ->
``quality`` checks raw -> dbt builds staging -> intermediate -> marts (``transform``: the
dbt helpers) -> ``clv`` fits the predicted lifetime value -> dbt builds ``customer_tiers`` and the marts
that read it -> ``allocation`` plans per customer and tier -> ``quality`` checks the marts
and plans -> ``publish`` swaps them into ``bi`` -> the report step (exports, dbt docs, the
HTML report and the run summary) and the notify step (``alerts``: account-alert e-mails).
"""

__version__ = "0.1.0"
