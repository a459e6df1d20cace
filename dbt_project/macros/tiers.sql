{#
    Tier level helpers, driven by var tier_levels: a list best -> worst of
    {name, cumulative_share}, the last share being 1.0.
#}

{#-
    tier_level: the first (best) level whose cumulative_share > position, where position
    in [0, 1] is the share (of customers, or of net contribution for pareto) ranked strictly above the
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


{#- tier_name: the level name of a tier rank (1 = best); null for a rank out of range. -#}
{% macro tier_name(rank) -%}
    case {{ rank }}
        {%- for level in var('tier_levels') %}
        when {{ loop.index }} then {{ sql_literal(level.name) }}
        {%- endfor %}
    end
{%- endmacro %}


{#- tier_levels_rows: the levels as rows (tier_rank, tier_name, cumulative_share), best first. -#}
{% macro tier_levels_rows() -%}
    select
        cast(levels.tier_rank as integer) as tier_rank,
        cast(levels.tier_name as text) as tier_name,
        cast(levels.cumulative_share as numeric) as cumulative_share
    from (
        values
        {%- for level in var('tier_levels') %}
        ({{ loop.index }}, {{ sql_literal(level.name) }}, {{ sql_number(level.cumulative_share) }})
        {%- if not loop.last %},{% endif %}
        {%- endfor %}
    ) as levels (tier_rank, tier_name, cumulative_share)
{%- endmacro %}


{#-
    value_component_columns: the four 0..1 components of the value score, each a percentile
    rank among the rows with a purchase in the window (cume_dist: the share of them at or
    below the row; 0 without a purchase). Reads columns monetary, frequency,
    net_contribution (profit after cost-to-serve), recency_days and has_purchase_in_window.
    Used for customers and for account groups.
-#}
{% macro value_component_columns() -%}
    {%- set components = [
        ('purchasing_power_score', 'monetary'),
        ('frequency_score', 'frequency'),
        ('profit_score', 'net_contribution'),
        ('recency_score', 'recency_days desc'),
    ] -%}
    {%- for name, order_by in components %}
        case
            when has_purchase_in_window
                then cast(cume_dist() over (
                        partition by has_purchase_in_window order by {{ order_by }}
                    ) as numeric)
            else 0
        end as {{ name }}{% if not loop.last %},{% endif %}
    {%- endfor %}
{%- endmacro %}


{#-
    value_score_expr: round(weighted components / sum of the weights, 4), var tier_weights.
    predicted=true adds the predicted_value component (column predicted_value_score) with its
    weight on rows whose column has_predicted_value is true; on other rows (a night without an
    accepted CLV fit) it and its weight drop out, so the score is the four others' as before.
-#}
{% macro value_score_expr(predicted=false) -%}
    {%- set weights = var('tier_weights') -%}
    {%- set w_predicted = sql_number(weights.get('predicted_value', 0)) -%}
    round(
        (
            {{ sql_number(weights.purchasing_power) }} * purchasing_power_score
            + {{ sql_number(weights.frequency) }} * frequency_score
            + {{ sql_number(weights.profit) }} * profit_score
            + {{ sql_number(weights.recency) }} * recency_score
            {%- if predicted %}
            + case when has_predicted_value then {{ w_predicted }} * predicted_value_score else 0 end
            {%- endif %}
        ) / (
            {{ sql_number(weights.purchasing_power) }}
            + {{ sql_number(weights.frequency) }}
            + {{ sql_number(weights.profit) }}
            + {{ sql_number(weights.recency) }}
            {%- if predicted %}
            + case when has_predicted_value then {{ w_predicted }} else 0 end
            {%- endif %}
        ),
        4
    )
{%- endmacro %}


{#-
    score_tier_expr: the tier by score alone, per var tier_method, from the columns
    value_position (share of rows with a strictly higher score), contribution_ranked_above
    and contribution_total (positive net contribution held by rows with a strictly higher
    score, and in all). prefix reads the position columns of another score (base_: the
    score without the predicted value).
-#}
{% macro score_tier_expr(prefix='') -%}
    {%- if var('tier_method') == 'pareto' -%}
        {{ tier_level('case when contribution_total > 0 then ' ~ prefix ~ 'contribution_ranked_above / contribution_total else ' ~ prefix ~ 'value_position end') }}
    {%- elif var('tier_method') == 'percentile' -%}
        {{ tier_level(prefix ~ 'value_position') }}
    {%- else -%}
        {{ exceptions.raise_compiler_error("var tier_method must be percentile or pareto, got '" ~ var('tier_method') ~ "'") }}
    {%- endif -%}
{%- endmacro %}


{#-
    Generic test tier_is_configured: every non-null value of the column is a level name of
    var tier_levels. Rows that fail are returned with the column's value, so the stored
    failures (store_failures) name the offending tier and the row's keys. on_as_of_date=true
    checks only the rows of the run's as-of date (a table keeping earlier dates, tiered with
    the levels of their own run); the date is read when the test runs, not when dbt parses
    the project (a `where` config would be rendered at parse time: see tierflow.dbt_patches).
-#}
{% test tier_is_configured(model, column_name, on_as_of_date=false) %}
    select *
    from {{ model }}
    where {{ column_name }} is not null
        and {{ tier_rank(column_name) }} is null
        {%- if on_as_of_date %}
        and as_of_date = {{ as_of_date() }}
        {%- endif %}
{% endtest %}


{#- rank_position: the share of the rows ranked strictly above this one by `order_by` (a
    window order, e.g. `value_score desc`): rank() - 1 counts the rows with a strictly higher
    value, so ties share a position and the first row is at 0. -#}
{% macro rank_position(order_by) -%}
    cast(rank() over (order by {{ order_by }}) - 1 as numeric) / count(*) over ()
{%- endmacro %}
