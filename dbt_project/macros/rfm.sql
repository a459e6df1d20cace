{#
    RFM scoring helpers.

    rfm_score: a 1..5 score, 5 = best, over the rows where `eligible` is true (null for the
    others): ceil(5 * cume_dist() over (order by <order_by>)), with the ordering putting the
    best last. cume_dist counts peers, so ties share the higher score. The product is rounded
    to 9 decimals before ceil so that float noise (5 * 0.6 = 3.0000000000000004) cannot
    push a score up.
#}
{% macro rfm_score(order_by, eligible='has_purchase_in_window') -%}
    case
        when {{ eligible }}
            then cast(ceil(round(cast(
                5 * cume_dist() over (partition by {{ eligible }} order by {{ order_by }})
            as numeric), 9)) as integer)
    end
{%- endmacro %}


{#
    rfm_segment_case: the segment of the (r, f) cell, from var rfm_segments
    ([{name, r: [low, high], f: [low, high]}, ...], validated by tierflow.config to cover
    each of the 25 cells once). Rows outside the grid (null scores) get `otherwise`.
#}
{% macro rfm_segment_case(r_score, f_score, otherwise) -%}
    case
        {%- for segment in var('rfm_segments') %}
        when {{ r_score }} between {{ segment.r[0] | int }} and {{ segment.r[1] | int }}
            and {{ f_score }} between {{ segment.f[0] | int }} and {{ segment.f[1] | int }}
            then {{ sql_literal(segment.name) }}
        {%- endfor %}
        else {{ sql_literal(otherwise) }}
    end
{%- endmacro %}
