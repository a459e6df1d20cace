{#
    Incremental order facts "as known on the as-of date A".

    A fact table holds, per order, the version of its header and lines current on the date
    it was last built (B), with the load and the date folder each came from. Building it for
    A rebuilds exactly the orders whose version on A may differ from what the table holds:

    - orders whose version on A came with a load the table has not seen (newer than its
      newest source_load_id: a new night, or a late file for an old date folder) or from a
      date folder after the newest it has seen (the run after B);
    - orders whose rows here came from date folders after A (a rerun of an earlier date
      after later ones): they go back to their version on A, or away when A knew none
      (`delete_rows_delivered_after_as_of_date`, a post-hook).

    The table's newest source_load_id and source_business_date stand in for "what was
    built": they can only be older than the real build, which rebuilds a few orders more,
    never fewer. A full refresh builds every order known on A.
#}

{% macro incremental_watermark(column) %}
    {#- The largest `column` already in the incremental model being built (0 when empty). -#}
    (select coalesce(max({{ column }}), 0) from {{ this }})
{%- endmacro %}


{% macro is_newer_than_built(load_id, business_date, built_load_id='source_load_id',
                             built_business_date='source_business_date') -%}
    {#- True for an input row (its load id and date folder columns given) that the incremental
        table being built has not seen: a newer load, or a later date folder. The table's
        newest load and date folder are read when the model runs and written into the SQL as
        constants: compared with a subquery's result, the planner would guess a third of the
        input and scan it all; with the constants it reads the input's statistics and finds the
        night's few rows through the indexes on those columns. -#}
    {%- if execute -%}
        {%- set newest = run_query(
            "select coalesce(max(" ~ built_load_id ~ "), 0), coalesce(max(" ~ built_business_date
            ~ "), date '0001-01-01') from " ~ this
        ).rows[0] -%}
    (
        {{ load_id }} > {{ newest[0] }}
        or {{ business_date }} > date '{{ newest[1] }}'
    )
    {%- else -%}
    (
        {{ load_id }} > (select coalesce(max({{ built_load_id }}), 0) from {{ this }})
        or {{ business_date }}
        > (select coalesce(max({{ built_business_date }}), date '0001-01-01') from {{ this }})
    )
    {%- endif -%}
{%- endmacro %}


{% macro is_new_to_facts(relation_alias) -%}
    {#- is_newer_than_built for a row of a fact's input (alias `relation_alias`). -#}
    {{ is_newer_than_built(relation_alias ~ '.source_load_id', relation_alias ~ '.source_business_date') }}
{%- endmacro %}


{% macro delete_rows_delivered_after_as_of_date(column='source_business_date') -%}
    {#- Post-hook: rows still here from date folders after A are keys that A did not know
        (those it knew were replaced by their version on A in this run). -#}
    delete from {{ this }} where {{ column }} > {{ as_of_date() }}
{%- endmacro %}


{% macro watermark_indexes() %}
    {#- Indexes on the columns is_newer_than_built and the reruns read in the table being built:
        the newest load and date folder are index lookups, not scans of the whole table. -#}
    {{ return([{'columns': ['source_load_id']}, {'columns': ['source_business_date']}]) }}
{% endmacro %}


{% macro as_known_incremental_config(key_columns, not_null_columns) %}
    {#- The config of a table kept "as known on A" like the order facts (the converted
        intermediates): delete+insert on the key's first column (an order's or invoice's id: a
        build rewrites all of an order's rows), rows from date folders after A removed after
        the build; the key (`key_columns`) unique and `not_null_columns` never null, enforced
        by the database (`enforce_key`: its unique index also serves the delete's lookups). -#}
    {{ config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=key_columns[0],
        on_schema_change='fail',
        indexes=watermark_indexes(),
        post_hook=[
            "{{ delete_rows_delivered_after_as_of_date() if is_incremental() }}",
            enforce_key_hook(key_columns, not_null_columns),
        ],
    ) }}
{% endmacro %}


{% macro enforce_key_hook(key_columns, not_null_columns) -%}
    {#- The post-hook (a string, rendered when the model runs) calling `enforce_key`. -#}
    {{- return("{{ enforce_key(" ~ key_columns ~ ", " ~ not_null_columns ~ ") }}") -}}
{%- endmacro %}


{% macro is_new_to_build(relation_alias) -%}
    {#- is_newer_than_built for a row of a staging table (alias `relation_alias`). -#}
    {{ is_newer_than_built(relation_alias ~ '.load_id', relation_alias ~ '.business_date') }}
{%- endmacro %}


{% macro built_after_as_of_date(key_column) -%}
    {#- The keys of the incremental table being built whose rows came from date folders
        after A: a rerun of an earlier date takes them back to their version on A. -#}
    select built.{{ key_column }}
    from {{ this }} as built
    where built.source_business_date > {{ as_of_date() }}
{%- endmacro %}


{% macro enforced_key_state(relation, key_columns, not_null_columns) -%}
    {#- The SQL of one row: `has_key` (a valid unique index on exactly `key_columns`, in that
        order, over the whole table) and `nullable` (those of the key and `not_null_columns` that may
        still hold nulls, or that the table lacks). -#}
    select
        exists (
            select
            from pg_index as i
            where i.indrelid = '{{ relation }}'::regclass
                and i.indisunique
                and i.indisvalid
                and i.indpred is null
                and i.indexprs is null
                and array(
                    select a.attname::text
                    from unnest(i.indkey::int2[]) with ordinality as k (attnum, position)
                    inner join pg_attribute as a
                        on a.attrelid = i.indrelid and a.attnum = k.attnum
                    order by k.position
                ) = array['{{ key_columns | join("', '") }}']::text[]
        ) as has_key,
        array(
            select named.column_name
            from unnest(array['{{ (key_columns + not_null_columns) | join("', '") }}']::text[])
                with ordinality as named (column_name, position)
            left join pg_attribute as a
                on a.attrelid = '{{ relation }}'::regclass
                and a.attname = named.column_name
                and not a.attisdropped
            where not coalesce(a.attnotnull, false)
            order by named.position
        ) as nullable
{%- endmacro %}


{% macro enforce_key(key_columns, not_null_columns=[]) -%}
    {#- Post-hook of an incremental table: its key unique and these columns never null,
        enforced by the database on every write (a unique index, NOT NULL) instead of data
        tests that scan the whole table every night (the table only grows; a night writes its
        delta). Adds what the table lacks: a new table, or one made before tierflow enforced
        them, whose existing rows are then checked once (duplicates or nulls fail the build,
        the index or constraint naming the key or column). Nothing when all is in place. The
        `key_enforced` test checks that it is. -#}
    {%- if execute -%}
        {%- set state = run_query(
            "select has_key, array_to_string(nullable, ',') as nullable from ("
            ~ enforced_key_state(this, key_columns, not_null_columns) ~ ") as state"
        ).rows[0] -%}
        {%- if state['nullable'] %}
    alter table {{ this }}
            {%- for column in state['nullable'].split(',') %}
        alter column {{ adapter.quote(column) }} set not null{{ ',' if not loop.last else ';' }}
            {%- endfor %}
        {%- endif %}
        {%- if not state['has_key'] %}
    create unique index on {{ this }} ({{ key_columns | join(', ') }});
        {%- endif %}
    {%- endif -%}
{%- endmacro %}


{#- The number of the build that last (re)wrote a fact row: one number per build of the model,
    from a sequence, so a row rebuilt later carries a larger number whatever the clocks say. The
    publish copies to bi only the rows built since the largest number it published
    (tierflow.publish.publisher.CHANGED_ROWS). The uncorrelated subquery is evaluated once per
    statement. `build_number_sequence()` is the model's pre-hook that makes the sequence. -#}
{% macro build_number() -%}
    (select nextval('{{ this.schema }}.fact_build_number'))
{%- endmacro %}

{% macro build_number_sequence() -%}
    create sequence if not exists {{ this.schema }}.fact_build_number
{%- endmacro %}

{% macro build_number_index() -%}
    {#- The post-hook that indexes build_number (the publish reads the rows of the builds since
        its last one by it); a catalog lookup when the index exists. -#}
    create index if not exists {{ this.identifier }}_build_number on {{ this }} (build_number)
{%- endmacro %}
