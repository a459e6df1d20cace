{#
    Incremental staging: each staging model is a table of the latest version of every key
    delivered by the as-of date A (latest_delivered_version), kept like the order facts
    (macros/incremental.sql): a night re-stages only the keys whose version on A may differ
    from what the table holds, from all their raw versions delivered by A:

    - keys with a raw row from a load the table has not seen (newer than its newest load_id:
      a new night, or a late file for an old date folder) or from a date folder after the
      newest it has seen (the night after a rerun of an earlier date), delivered by A;
    - keys whose row here came from a date folder after A (a rerun of an earlier date after
      later ones): they go back to their version on A, or away when A knew none
      (`delete_rows_delivered_after_as_of_date('business_date')`, a post-hook).

    The first build, or a full refresh, stages every key delivered by A. So a night reads
    the raw rows once to find what is new (a scan, no sort) and deduplicates only those keys,
    and the prepare step's tests read tables instead of views that re-deduplicated the whole
    raw history for every test (docs/performance.md).
#}

{% macro staging_config(key_columns, not_null_columns=[]) %}
    {#- The model config every staging model shares; `key_columns` is its key, unique and (with
        `not_null_columns`) never null, enforced by the database (`enforce_key`; its unique
        index also serves dbt's delete), and so are its row rules (`enforce_row_rules`). Indexed on the load and the date folder (finding what
        is new). -#}
    {{ config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=key_columns,
        on_schema_change='fail',
        indexes=[{'columns': ['load_id']}, {'columns': ['business_date']}],
        post_hook=[
            "{{ delete_rows_delivered_after_as_of_date('business_date') if is_incremental() }}",
            enforce_key_hook(key_columns, not_null_columns),
            "{{ enforce_row_rules() }}",
            "analyze {{ this }}",
        ],
    ) }}
{% endmacro %}


{% macro delivered_versions_to_stage(source_relation, key_columns) -%}
    {#- The raw rows (of `source_relation`) a staging model deduplicates: every version
        delivered by A of the keys to (re)stage. -#}
    select raw_versions.*
    from {{ source_relation }} as raw_versions
    {%- if is_incremental() %}
    inner join (
        select {{ key_columns | join(', ') }}
        from {{ source_relation }}
        where {{ delivered_by_as_of_date() }}
            and {{ is_newer_than_built('_load_id', '_business_date', 'load_id', 'business_date') }}
        union
        select {{ key_columns | join(', ') }}
        from {{ this }}
        where business_date > {{ as_of_date() }}
    ) as keys_to_stage
        using ({{ key_columns | join(', ') }})
    {%- endif %}
    -- as known on the as-of date: later deliveries are not visible to this run
    where {{ delivered_by_as_of_date('raw_versions._business_date') }}
{%- endmacro %}
