{#
    Row rules checked on every write instead of every night.

    A row rule is a condition every row of an incremental table must meet (the facts' rounded
    parts add up, a status is one of the known ones). As data tests (`expression_is_true`,
    `accepted_values`) they scanned the whole table every night, though a night writes only
    its delta. Each is now a CHECK constraint on the table, so the database checks every row
    as it is written (a row that breaks a rule fails the model, naming the rule, and the table
    keeps its rows as before), like the keys and not-null columns (`enforce_key`).

    The rules are written once, as `row_rule_enforced` tests in the model's YAML:

        data_tests:
          - row_rule_enforced:
              arguments:
                rule: gross_margin
                expression: "gross_margin = net_revenue - cogs"
                applies_to: "cogs is not null"   # optional: the rows the rule is for

    The post-hook `enforce_row_rules()` makes them constraints; the test checks the catalog.
    Same verdict as `expression_is_true` (a null expression fails) with `where: <applies_to>`,
    and as `accepted_values` (a null status passes) written as `status in (...)`.
#}

{% macro row_rule_name(rule, expression, applies_to=none) -%}
    {#- The constraint's name: the rule's, and a hash of its definition, so a rule whose
        expression changes is a new constraint, added and checked against every row. -#}
    {%- set name = 'row_rule_' ~ rule ~ '_' ~ local_md5(expression ~ '|' ~ (applies_to or ''))[:8] -%}
    {%- if name | length > 63 -%}
        {{ exceptions.raise_compiler_error("row rule name too long for PostgreSQL: " ~ name) }}
    {%- endif -%}
    {{- return(name) -}}
{%- endmacro %}


{% macro row_rule_check(expression, applies_to=none) -%}
    {#- The CHECK condition: true for a row the rule is not for (`applies_to` not true),
        else the expression, a null counting as false. -#}
    {%- if applies_to -%}
        coalesce(not ({{ applies_to }}), true) or coalesce(({{ expression }}), false)
    {%- else -%}
        coalesce(({{ expression }}), false)
    {%- endif -%}
{%- endmacro %}


{% macro enforce_row_rules() -%}
    {#- Post-hook: the model's row rules (its `row_rule_enforced` tests) as CHECK constraints.
        Adds the missing ones (the table's rows are then checked once: a row that breaks one
        fails the build and the table keeps its rows), validates one left unvalidated, drops
        those no test asks for any more (a rule changed or removed). When all is in place,
        one catalog query. -#}
    {%- if execute -%}
        {%- set wanted = {} -%}
        {%- for node in graph.nodes.values() -%}
            {%- set test = node.get('test_metadata') or {} -%}
            {%- if node.resource_type == 'test' and test.get('name') == 'row_rule_enforced'
                and node.get('attached_node') == model.unique_id -%}
                {%- set args = test.kwargs -%}
                {%- do wanted.update({
                    row_rule_name(args.rule, args.expression, args.get('applies_to')):
                        row_rule_check(args.expression, args.get('applies_to'))
                }) -%}
            {%- endif -%}
        {%- endfor -%}
        {%- set present = {} -%}
        {%- for row in run_query(
            "select conname::text, convalidated from pg_constraint where conrelid = '"
            ~ this ~ "'::regclass and contype = 'c' and conname::text like 'row\\_rule\\_%'"
        ).rows -%}
            {%- do present.update({row[0]: row[1]}) -%}
        {%- endfor -%}
        {%- for name in present if name not in wanted %}
    alter table {{ this }} drop constraint {{ name }};
        {%- endfor %}
        {#- the missing ones in one statement: PostgreSQL checks the rows against all of them in
            one pass over the table (one statement each: a pass each; a full build of
            fct_order_lines at 100,000 customers read 3.6 M rows three times) -#}
        {%- set missing = [] -%}
        {%- for name, check in wanted.items() if name not in present -%}
            {%- do missing.append('add constraint ' ~ name ~ ' check (' ~ check ~ ')') -%}
        {%- endfor %}
        {%- if missing %}
    alter table {{ this }} {{ missing | join(', ') }};
        {%- endif %}
        {%- for name in wanted if name in present and not present[name] %}
    alter table {{ this }} validate constraint {{ name }};
        {%- endfor %}
    {%- endif -%}
{%- endmacro %}
