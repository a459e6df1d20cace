"""Step 5: write-audit-publish into the BI schema, then exports and the run summary."""

from tierflow.publish.publisher import PUBLISHED_TABLES, publish

__all__ = ["PUBLISHED_TABLES", "publish"]
