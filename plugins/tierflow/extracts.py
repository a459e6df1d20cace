"""The extract contract (SPEC "The extract contract"), as data.

Every landing entity is described once here: its key, its columns with their types and
whether they are required, and the foreign keys the loader checks. Config (which entities
may be expected daily), the demo generator, all three load paths, the raw DDL and the tests
read this table, and docs/ingest.md describes it, so adding a column means changing one line.
It imports nothing from tierflow: a leaf every other module may read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Column types the loader knows how to parse and Postgres stores them as.
PG_TYPES = {
    "text": "text",
    "int": "integer",
    "numeric": "numeric",
    "date": "date",
    "timestamp": "timestamptz",
    "bool": "boolean",
}


@dataclass(frozen=True)
class Column:
    name: str
    type: str = "text"
    required: bool = False
    allowed: tuple[str, ...] | None = None  # accepted values (case-insensitive, stored lowercase)
    non_negative: bool = False
    positive: bool = False  # zero is refused too (a rate of 0 would make amounts vanish)


@dataclass(frozen=True)
class ForeignKey:
    column: str
    entity: str  # "system/entity" it points to
    ref_column: str


@dataclass(frozen=True)
class Entity:
    system: str
    name: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    foreign_keys: tuple[ForeignKey, ...] = field(default_factory=tuple)
    # column holding the row's currency and the date column used to look up its fx rate
    currency_column: str | None = None
    currency_date_column: str | None = None
    # (earlier, later) date columns: the later one, when given, is not before the earlier one
    ordered_dates: tuple[tuple[str, str], ...] = ()

    @property
    def path(self) -> str:
        return f"{self.system}/{self.name}"

    @property
    def raw_table(self) -> str:
        """Name of the raw table in the raw schema, e.g. ``erp__order_lines``."""
        return f"{self.system}__{self.name}"

    @property
    def event_date_column(self) -> str | None:
        """When the row's event happened: a value far after the extract's date is rejected.

        Only this column is checked: other dates (an invoice's due date, an override's
        valid_to) are legitimately in the future.
        """
        return EVENT_DATE_COLUMNS.get(self.path)

    @property
    def iso_currency_column(self) -> str | None:
        """The column holding an ISO currency code (three letters, stored upper-case): the
        row's currency, or the currency an fx rate is for."""
        return self.currency_column or ("currency" if self.path == "erp/fx_rates" else None)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def required_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


EVENT_DATE_COLUMNS = {
    "erp/fx_rates": "rate_date",
    "crm/customers": "created_at",
    "crm/activities": "activity_date",
    "erp/orders": "order_date",
    "erp/invoices": "invoice_date",
    "service/tickets": "opened_at",
}

C = Column
_STATUS = ("completed", "pending", "cancelled", "returned")

ENTITIES: tuple[Entity, ...] = (
    Entity(
        "erp", "fx_rates", ("rate_date", "currency"),
        (
            C("rate_date", "date", True),
            C("currency", "text", True),
            C("rate_to_base", "numeric", True, non_negative=True, positive=True),
        ),
    ),
    Entity(
        "crm", "customers", ("customer_id",),
        (
            C("customer_id", required=True),
            C("customer_name"),
            C("parent_customer_id"),
            C("customer_type", allowed=("b2b", "b2c")),
            C("industry"),
            C("region"),
            C("country"),
            C("city"),
            C("channel", allowed=("online", "offline", "distributor")),
            C("account_manager"),
            C("credit_limit", "numeric", non_negative=True),
            C("payment_terms_days", "int", non_negative=True),
            C("created_at", "date", True),
            C("updated_at", "timestamp", True),
            C("is_active", "bool"),
        ),
    ),
    Entity(
        "crm", "tier_overrides", ("customer_id", "valid_from"),
        (
            C("customer_id", required=True),
            C("value_tier", required=True),
            C("reason", required=True),
            C("set_by", required=True),
            C("valid_from", "date", True),
            C("valid_to", "date"),
        ),
        (ForeignKey("customer_id", "crm/customers", "customer_id"),),
        ordered_dates=(("valid_from", "valid_to"),),
    ),
    Entity(
        "crm", "activities", ("activity_id",),
        (
            C("activity_id", required=True),
            C("customer_id", required=True),
            C("activity_date", "date", True),
            C("activity_type", allowed=("visit", "call", "email", "event", "gift")),
            C("cost", "numeric", non_negative=True),
            C("owner"),
            C("updated_at", "timestamp", True),
        ),
        (ForeignKey("customer_id", "crm/customers", "customer_id"),),
    ),
    Entity(
        "erp", "products", ("product_id",),
        (
            C("product_id", required=True),
            C("product_name"),
            C("category"),
            C("list_price", "numeric", non_negative=True),
            C("standard_cost", "numeric", True, non_negative=True),
            C("currency"),
            C("updated_at", "timestamp", True),
        ),
    ),
    Entity(
        "erp", "orders", ("order_id",),
        (
            C("order_id", required=True),
            C("customer_id", required=True),
            C("order_date", "date", True),
            C("status", required=True, allowed=_STATUS),
            C("currency", required=True),
            C("channel"),
            C("sales_rep"),
            C("shipping_cost", "numeric", non_negative=True),
            C("updated_at", "timestamp", True),
        ),
        (ForeignKey("customer_id", "crm/customers", "customer_id"),),
        currency_column="currency",
        currency_date_column="order_date",
    ),
    Entity(
        "erp", "order_lines", ("order_id", "line_number"),
        (
            C("order_id", required=True),
            C("line_number", "int", True),
            C("product_id", required=True),
            C("quantity", "numeric", True, non_negative=True),
            C("unit_price", "numeric", True, non_negative=True),
            C("discount_amount", "numeric", non_negative=True),
            C("unit_cost", "numeric", non_negative=True),
            C("updated_at", "timestamp", True),
        ),
        (
            ForeignKey("order_id", "erp/orders", "order_id"),
            ForeignKey("product_id", "erp/products", "product_id"),
        ),
    ),
    Entity(
        "erp", "invoices", ("invoice_id",),
        (
            C("invoice_id", required=True),
            C("customer_id", required=True),
            C("order_id"),
            C("invoice_date", "date", True),
            C("due_date", "date", True),
            C("amount", "numeric", True),
            C("currency", required=True),
            C("paid_date", "date"),
            C("paid_amount", "numeric"),
            C("status", allowed=("open", "paid", "written_off")),
            C("updated_at", "timestamp", True),
        ),
        (ForeignKey("customer_id", "crm/customers", "customer_id"),),
        currency_column="currency",
        currency_date_column="invoice_date",
    ),
    Entity(
        "service", "tickets", ("ticket_id",),
        (
            C("ticket_id", required=True),
            C("customer_id", required=True),
            C("opened_at", "timestamp", True),
            C("closed_at", "timestamp"),
            C("category"),
            C("priority"),
            C("handling_minutes", "numeric", non_negative=True),
            C("updated_at", "timestamp", True),
        ),
        (ForeignKey("customer_id", "crm/customers", "customer_id"),),
    ),
)

BY_PATH: dict[str, Entity] = {e.path: e for e in ENTITIES}


def referenced_columns(entity: Entity) -> tuple[str, ...]:
    """The columns of ``entity`` that other entities' foreign keys point at (its keys other
    files are checked against)."""
    return tuple(sorted({fk.ref_column for e in ENTITIES for fk in e.foreign_keys
                         if fk.entity == entity.path}))

# The SPEC's minimum viable input.
REQUIRED_ENTITIES: tuple[str, ...] = ("crm/customers", "erp/products", "erp/orders", "erp/order_lines")

# Load order: referenced entities first, so foreign keys can be checked against what is loaded.
LOAD_ORDER: tuple[str, ...] = tuple(e.path for e in ENTITIES)

# Values PostgreSQL (or the readers) cannot take are per-row rejects, never whole-file failures:
# a field longer than Python's csv reader takes by default (131,072 characters: a runaway
# quote or a binary blob, in any format), an integer outside PostgreSQL's 32-bit integer, a
# number outside its numeric type (131,072 digits before the point, 16,383 after).
FIELD_LIMIT = 131_072
INT4_MIN, INT4_MAX = -(2**31), 2**31 - 1
NUMERIC_MAX_WEIGHT_DIGITS = 131_072
NUMERIC_MAX_SCALE = 16_383

# Metadata columns every raw table carries after the contract's columns.
RAW_META_COLUMNS = (
    ("_load_id", "bigint not null"),
    ("_line_number", "integer not null"),
    ("_business_date", "date not null"),
    ("_extra", "jsonb"),
)
