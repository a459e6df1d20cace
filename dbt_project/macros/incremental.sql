{% macro incremental_watermark(column) %}
    {#- The largest `column` already in the incremental model being built (0 when empty):
        rows delivered by a newer load than this are the ones a run must rebuild. -#}
    (select coalesce(max({{ column }}), 0) from {{ this }})
{%- endmacro %}
