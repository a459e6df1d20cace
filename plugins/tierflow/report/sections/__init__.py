"""The report's sections, in the order the page shows them.

``SECTIONS`` is the one registry the page reads: each section's entry in the table of contents,
its tiles at the top of the page and its body all come from its ``Section`` here, so a section
added to this list appears in all three and one left out appears in none.
"""

from tierflow.report.html import Section
from tierflow.report.sections.alerts import ALERTS
from tierflow.report.sections.checks import QUALITY, REJECTS
from tierflow.report.sections.plan import ACTIONS, ALLOCATION, PLAN_PERFORMANCE
from tierflow.report.sections.sales import REGIONS, RETENTION, SALES_KPIS, TEAM
from tierflow.report.sections.tiers import MIGRATIONS, TIER_MIX
from tierflow.report.sections.value import CLV, WHALE

SECTIONS: tuple[Section, ...] = (
    TIER_MIX,
    WHALE,
    MIGRATIONS,
    CLV,
    ALLOCATION,
    ACTIONS,
    PLAN_PERFORMANCE,
    ALERTS,
    SALES_KPIS,
    TEAM,
    REGIONS,
    RETENTION,
    QUALITY,
    REJECTS,
)

__all__ = ["SECTIONS", "Section"]
