{#
    latest_delivered_version: the dedupe every staging model does, one row per key.

    `relation` is the staging model's `source` CTE: the raw rows delivered by the as-of date
    (macros/as_of.sql), where a re-delivered row is a newer version of its key. The version
    kept is the one with the latest `newest_first` columns (the extract's updated_at, where it
    has one; none for extracts without it), then the latest load (_load_id), then the last
    line of its file (_line_number). The rows keep every raw column, plus version_rank (1).
#}
{% macro latest_delivered_version(relation, key_columns, newest_first=['updated_at']) -%}
    select versions.*
    from (
        select
            *,
            row_number() over (
                partition by {{ key_columns | join(', ') }}
                order by
                    {%- for column in newest_first %} {{ column }} desc,{% endfor %}
                    _load_id desc, _line_number desc
            ) as version_rank
        from {{ relation }}
    ) as versions
    where versions.version_rank = 1
{%- endmacro %}
