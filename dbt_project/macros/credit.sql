{#
    credit_band_reached: true when any configured threshold of a band of var credit_risk
    ({overdue_share, avg_days_late, write_off_count}, null = not used) is reached; false
    when the band has no threshold at all.
#}
{% macro credit_band_reached(band, overdue_share, avg_days_late, write_off_count) -%}
    {%- set thresholds = var('credit_risk')[band] -%}
    (
        false
        {%- if thresholds.overdue_share is not none %}
        or coalesce({{ overdue_share }} >= {{ sql_number(thresholds.overdue_share) }}, false)
        {%- endif %}
        {%- if thresholds.avg_days_late is not none %}
        or coalesce({{ avg_days_late }} >= {{ sql_number(thresholds.avg_days_late) }}, false)
        {%- endif %}
        {%- if thresholds.write_off_count is not none %}
        or {{ write_off_count }} >= {{ sql_number(thresholds.write_off_count) }}
        {%- endif %}
    )
{%- endmacro %}
