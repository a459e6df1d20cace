{#
    The database enforces a row rule of `model`: a validated CHECK constraint made from this
    rule's definition (macros/row_rules.sql; the post-hook `enforce_row_rules` puts it there).
    Checks the catalog, not the rows: the table's every write is checked by the constraint.
    Fails with one row when the constraint is missing.
    Usage:
        data_tests:
          - row_rule_enforced:
              arguments:
                rule: net_revenue
                expression: "net_revenue = gross_revenue - discount"
#}
{% test row_rule_enforced(model, rule, expression, applies_to=none) %}

{%- set name = row_rule_name(rule, expression, applies_to) %}

select 'no validated check constraint {{ name }}: {{ row_rule_check(expression, applies_to) | replace("'", "''") }}' as missing
where not exists (
    select
    from pg_constraint
    where
        conrelid = '{{ model }}'::regclass
        and conname::text = '{{ name }}'
        and contype = 'c'
        and convalidated
)

{% endtest %}
