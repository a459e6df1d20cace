"""Step 5: write-audit-publish into the BI schema; the exports and run summary follow in tierflow.report."""

from tierflow.publish.publisher import (
    CURRENT_STATE_TABLES,
    HISTORY_INDEXES,
    PER_DATE_TABLES,
    PUBLISHED_TABLES,
    publish,
)

__all__ = ["CURRENT_STATE_TABLES", "HISTORY_INDEXES", "PER_DATE_TABLES", "PUBLISHED_TABLES", "publish"]
