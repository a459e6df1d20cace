{#
    Tier level helpers, driven by var tier_levels: a list best -> worst of
    {name, cumulative_share}, the last share being 1.0.
#}

{#-
    tier_level: the first (best) level whose cumulative_share > position, where position
    in [0, 1] is the share (of customers, or of margin for pareto) ranked strictly above the
    customer. A position of 1 (possible with pareto) falls through to the worst level.
-#}
{% macro tier_level(position) -%}
    {%- set levels = var('tier_levels') -%}
    case
        {%- for level in levels %}
        when {{ position }} < {{ sql_number(level.cumulative_share) }} then {{ sql_literal(level.name) }}
        {%- endfor %}
        else {{ sql_literal(levels[-1].name) }}
    end
{%- endmacro %}


{#- tier_rank: 1 for the best level, 2 for the next, ...; null for an unknown name. -#}
{% macro tier_rank(tier) -%}
    case {{ tier }}
        {%- for level in var('tier_levels') %}
        when {{ sql_literal(level.name) }} then {{ loop.index }}
        {%- endfor %}
    end
{%- endmacro %}


{#- tier_cumulative_share: the cumulative_share of the named level (for reasons). -#}
{% macro tier_cumulative_share(tier) -%}
    case {{ tier }}
        {%- for level in var('tier_levels') %}
        when {{ sql_literal(level.name) }} then {{ sql_number(level.cumulative_share) }}
        {%- endfor %}
    end
{%- endmacro %}


{#-
    tier_band_text: where a percentile level sits, in words, e.g. with levels high 0.2,
    medium 0.5, low 1.0: 'in the top 20%', 'in the top 50% but not the top 20%',
    'below the top 50%'.
-#}
{% macro tier_band_text(tier) -%}
    {%- set levels = var('tier_levels') -%}
    case {{ tier }}
        {%- for level in levels %}
        {%- set pct = '%g' | format(level.cumulative_share * 100) %}
        {%- if not loop.first %}{% set prev_pct = '%g' | format(loop.previtem.cumulative_share * 100) %}{% endif %}
        when {{ sql_literal(level.name) }} then
            {%- if loop.first %} {{ sql_literal('in the top ' ~ pct ~ '%') }}
            {%- elif loop.last %} {{ sql_literal('below the top ' ~ prev_pct ~ '%') }}
            {%- else %} {{ sql_literal('in the top ' ~ pct ~ '% but not the top ' ~ prev_pct ~ '%') }}
            {%- endif %}
        {%- endfor %}
    end
{%- endmacro %}
