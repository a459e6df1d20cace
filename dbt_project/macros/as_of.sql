{#
    Reading the data as it was known on the as-of date A.

    Every staging model keeps only the raw rows delivered in date folders <= A before it
    picks the latest version of each key, so a rerun of an old date reads exactly what was
    known then, whatever later extracts were loaded since (SPEC, "Operating promises").
#}

{% macro delivered_by_as_of_date(column='_business_date') -%}
    {{ column }} <= {{ as_of_date() }}
{%- endmacro %}


{#
    History is read from what BI was shown: the published tables (schema var publish_schema,
    set by the pipeline) hold only nights that passed every quality gate, so a failed night
    never becomes a later night's "previous tier". True when the published table exists (it
    does not before the first publish); always true while dbt parses, so that the `source`
    the model reads is known to dbt's graph. Unit tests override it.
#}
{% macro has_published_history(table_name) %}
    {%- if not execute -%}
        {{ return(true) }}
    {%- endif -%}
    {%- set relation = adapter.get_relation(
        database=target.database, schema=var('publish_schema'), identifier=table_name
    ) -%}
    {{ return(relation is not none) }}
{% endmacro %}


{#
    True when the published table has a b-tree index whose leading columns are `columns`, in
    that order (the publisher creates the ones the marts read history through, see
    tierflow.publish.HISTORY_INDEXES). A model that reads a customer's history through such an
    index (one probe per customer, whatever the number of nights) falls back to scanning the
    history when it is missing: the first night after an upgrade, before the publish made it.
    Always true while dbt parses. Unit tests override it.
#}
{% macro has_published_index(table_name, columns) %}
    {%- if not execute -%}
        {{ return(true) }}
    {%- endif -%}
    {%- set checks = [] -%}
    {%- for column in columns -%}
        {%- do checks.append(
            "exists (select 1 from pg_attribute as a where a.attrelid = c.oid and a.attnum = i.indkey["
            ~ loop.index0 ~ "] and a.attname = '" ~ column ~ "')"
        ) -%}
    {%- endfor -%}
    {%- set found = run_query(
        "select 1 from pg_index as i"
        ~ " join pg_class as c on c.oid = i.indrelid"
        ~ " join pg_namespace as n on n.oid = c.relnamespace"
        ~ " join pg_class as ic on ic.oid = i.indexrelid"
        ~ " join pg_am as am on am.oid = ic.relam and am.amname = 'btree'"
        ~ " where n.nspname = '" ~ var('publish_schema') ~ "' and c.relname = '" ~ table_name ~ "'"
        ~ " and i.indisvalid and " ~ checks | join(' and ')
    ) -%}
    {{ return(found.rows | length > 0) }}
{% endmacro %}


{#
    Predicted lifetime value for A exists when the `clv` step (tierflow.clv, run between the
    DAG's two dbt groups) wrote customer_clv into the marts schema. The step always creates the
    table; it holds rows for A only when a CLV fit was accepted and in use. A `dbt build` run by
    hand without the step computes the tiers without predicted value, as such a night does.
    Always true while dbt parses (so the source is in dbt's graph). Unit tests override it.
#}
{% macro has_clv_predictions() %}
    {%- if not execute -%}
        {{ return(true) }}
    {%- endif -%}
    {%- set relation = adapter.get_relation(
        database=target.database, schema=target.schema ~ '_marts', identifier='customer_clv'
    ) -%}
    {{ return(relation is not none) }}
{% endmacro %}
