{#
    The database enforces `model`'s key and not-null columns: a unique index on exactly `key`
    (in that order) and NOT NULL on the key and every column of `not_null` (the post-hook
    `enforce_key` puts them there). Checks the catalog, not the rows: the incremental tables
    only grow, and their every write is checked by the index and the constraints. Fails with
    one row per missing guarantee.
    Usage:
        data_tests:
          - key_enforced:
              arguments:
                key: [order_id, line_number]
                not_null: [customer_id, source_load_id]
#}
{% test key_enforced(model, key, not_null=[]) %}

with

state as (

    {{ enforced_key_state(model, key, not_null) }}

)

select 'no unique index on ({{ key | join(", ") }})' as missing
from state
where not has_key

union all

select 'not null on ' || nullable_column as missing
from state
cross join unnest(state.nullable) as nullable_column

{% endtest %}
