"""Deterministic demo extracts: a realistic company's CRM/ERP/service deltas, with known flaws.

Why this exists: the nightly pipeline (ingest -> quality -> dbt -> tiers -> publish) must be
runnable and demonstrable without a customer's data, and its tests need input whose shape is
known. :func:`generate` writes two years of daily extracts in the landing layout of SPEC
"The extract contract" with the effects the tiering must see (Pareto-shaped spend, seasonality,
growing / fading / churning customers, late payers, re-delivered rows that supersede older
ones) plus a small, documented sprinkle of bad rows. Every bad row is listed in the manifest
(file + line), so tests can check that each one ends up in the rejects table.

Determinism: all randomness comes from generators seeded with ``seed``; the same arguments
give byte-identical files. The manifest holds no timings for the same reason.

The rooms, in the order the generator uses them:

- ``reference``: regions, names, the product catalogue, exchange rates, the demand calendar;
- ``customers``: who the customers are, their hidden behaviour, their record changes;
- ``orders``: orders, lines and invoices, and what becomes of each (paid, returned, ...);
- ``touches``: service tickets and sales activities;
- ``bad_rows``: the planted bad rows (``BAD_KINDS``);
- ``writer``: the CSV files, the manifest (``MANIFEST_NAME``) and the landing's guard;
- ``simulation``: the state they share (seeded draws, calendar, ids, today's rows);
- ``generator``: the day loop and :func:`generate`; ``values``: how values are spelled.
"""

from tierflow.demo.bad_rows import BAD_KINDS, BAD_PER_KIND
from tierflow.demo.generator import generate
from tierflow.demo.reference import BASE_CURRENCY
from tierflow.demo.writer import ENTITY_PATHS, MANIFEST_NAME, NOTES

__all__ = ["BAD_KINDS", "BAD_PER_KIND", "BASE_CURRENCY", "ENTITY_PATHS", "MANIFEST_NAME", "NOTES", "generate"]
