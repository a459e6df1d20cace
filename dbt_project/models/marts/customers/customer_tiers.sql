{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='as_of_date',
        on_schema_change='append_new_columns',
    )
}}
{%- set weights = var('tier_weights') -%}
-- One row per customer and as-of date A: a weighted value score and the value tier it
-- gives (method var tier_method: percentile or pareto), the three one-dimension tiers, the
-- reason in plain words, and the change against the customer's previous tier.
with

customer_rfm as (

    select * from {{ ref('customer_rfm') }}
    where as_of_date = {{ as_of_date() }}

),

orders as (

    select * from {{ ref('fct_orders') }}

),

{% if is_incremental() %}
previous_tiers as (

    -- the customer's tier at the latest earlier as-of date already built
    select distinct on (customer_id)
        customer_id,
        value_tier
    from {{ this }}
    where as_of_date < {{ as_of_date() }}
    order by customer_id asc, as_of_date desc

),
{% endif %}

window_margin as (

    select
        customer_id,
        sum(gross_margin) as gross_margin
    from orders
    where status = 'completed'
        and order_date <= {{ as_of_date() }}
        and order_date > {{ as_of_date() }} - {{ var('rfm_window_days') | int }}
    group by customer_id

),

customer_metrics as (

    select
        customer_rfm.customer_id,
        customer_rfm.monetary,
        customer_rfm.frequency,
        customer_rfm.recency_days,
        coalesce(window_margin.gross_margin, 0) as gross_margin,
        customer_rfm.has_purchase_in_window,
        customer_rfm.rfm_segment
    from customer_rfm
    left join window_margin
        on customer_rfm.customer_id = window_margin.customer_id

),

components as (

    -- each component is a 0..1 percentile rank among customers with a purchase in the
    -- window (cume_dist: the share of them at or below the customer); 0 without a purchase
    select
        *,
        case
            when has_purchase_in_window
                then cast(cume_dist() over (
                        partition by has_purchase_in_window order by monetary
                    ) as numeric)
            else 0
        end as purchasing_power_score,
        case
            when has_purchase_in_window
                then cast(cume_dist() over (
                        partition by has_purchase_in_window order by frequency
                    ) as numeric)
            else 0
        end as frequency_score,
        case
            when has_purchase_in_window
                then cast(cume_dist() over (
                        partition by has_purchase_in_window order by gross_margin
                    ) as numeric)
            else 0
        end as profit_score,
        case
            when has_purchase_in_window
                then cast(cume_dist() over (
                        partition by has_purchase_in_window order by recency_days desc
                    ) as numeric)
            else 0
        end as recency_score
    from customer_metrics

),

value_scored as (

    select
        *,
        round(
            (
                {{ sql_number(weights.purchasing_power) }} * purchasing_power_score
                + {{ sql_number(weights.frequency) }} * frequency_score
                + {{ sql_number(weights.profit) }} * profit_score
                + {{ sql_number(weights.recency) }} * recency_score
            ) / (
                {{ sql_number(weights.purchasing_power) }}
                + {{ sql_number(weights.frequency) }}
                + {{ sql_number(weights.profit) }}
                + {{ sql_number(weights.recency) }}
            ),
            4
        ) as value_score
    from components

),

positioned as (

    -- position = share ranked strictly above the customer (rank() - 1 counts the customers
    -- with a strictly higher value); the tier is the first level whose cumulative share
    -- exceeds it
    select
        *,
        count(*) over () as customer_count,
        rank() over (order by value_score desc) as value_rank,
        cast(rank() over (order by value_score desc) - 1 as numeric)
        / count(*) over () as value_position,
        cast(rank() over (order by monetary desc) - 1 as numeric)
        / count(*) over () as purchasing_power_position,
        cast(rank() over (order by frequency desc) - 1 as numeric)
        / count(*) over () as frequency_position,
        cast(rank() over (order by gross_margin desc) - 1 as numeric)
        / count(*) over () as profit_position,
        -- pareto: share of the total positive gross margin held by customers with a
        -- strictly higher value score (running sum incl. peers minus the peers)
        sum(greatest(gross_margin, 0)) over (order by value_score desc)
        - sum(greatest(gross_margin, 0)) over (partition by value_score)
            as margin_ranked_above,
        sum(greatest(gross_margin, 0)) over () as margin_total
    from value_scored

),

tiered as (

    select
        *,
        {%- if var('tier_method') == 'pareto' %}
        {{ tier_level('case when margin_total > 0 then margin_ranked_above / margin_total else value_position end') }}
            as value_tier,
        {%- elif var('tier_method') == 'percentile' %}
        {{ tier_level('value_position') }} as value_tier,
        {%- else %}
        {{ exceptions.raise_compiler_error("var tier_method must be percentile or pareto, got '" ~ var('tier_method') ~ "'") }}
        {%- endif %}
        {{ tier_level('purchasing_power_position') }} as purchasing_power_tier,
        {{ tier_level('frequency_position') }} as frequency_tier,
        {{ tier_level('profit_position') }} as profit_tier
    from positioned

),

{% if is_incremental() %}
with_previous as (

    select
        tiered.*,
        previous_tiers.value_tier as previous_value_tier
    from tiered
    left join previous_tiers
        on tiered.customer_id = previous_tiers.customer_id

),
{% else %}
with_previous as (

    select
        *,
        cast(null as text) as previous_value_tier
    from tiered

),
{% endif %}

explained as (

    select
        *,
        {{ tier_rank('value_tier') }} as value_tier_rank,
        case
            when not has_purchase_in_window
                then value_tier || ': no completed order in the last '
                    || {{ var('rfm_window_days') | int }} || ' days ('
                    || case
                        when recency_days is null then 'never ordered'
                        else 'last order ' || recency_days || ' days ago'
                    end
                    || '), value score ' || to_char(value_score, 'FM0.0000')
                    || ', ranks ' || value_rank || ' of ' || customer_count || ' customers'
            else value_tier || ': value score ' || to_char(value_score, 'FM0.0000')
                || ' ranks ' || value_rank || ' of ' || customer_count || ' customers'
                {%- if var('tier_method') == 'pareto' %}
                || case
                    when margin_total > 0
                        then ', customers ranked above it hold '
                            || {{ format_share('margin_ranked_above / margin_total') }}
                            || ' of the positive gross margin'
                    else ', ' || {{ tier_band_text('value_tier') }}
                end
                {%- else %}
                || ', ' || {{ tier_band_text('value_tier') }}
                {%- endif %}
                || ' (spend ' || {{ format_amount('monetary') }} || ' ' || {{ base_currency() }}
                || ', ' || frequency || case when frequency = 1 then ' order' else ' orders' end
                || ', last order '
                || case
                    when recency_days = 0 then 'today'
                    when recency_days = 1 then '1 day ago'
                    else recency_days || ' days ago'
                end
                || ')'
        end as tier_reason
    from with_previous

),

final as (

    select
        -- ids
        customer_id,

        -- dates
        {{ as_of_date() }} as as_of_date,

        -- tiers
        value_tier,
        value_tier_rank,
        value_score,
        purchasing_power_tier,
        frequency_tier,
        profit_tier,
        rfm_segment,
        tier_reason,

        -- change against the previous run
        previous_value_tier,
        case
            when {{ tier_rank('previous_value_tier') }} is null then 'new'
            when value_tier_rank < {{ tier_rank('previous_value_tier') }} then 'up'
            when value_tier_rank > {{ tier_rank('previous_value_tier') }} then 'down'
            else 'same'
        end as tier_change,

        -- value score components (0..1)
        purchasing_power_score,
        frequency_score,
        profit_score,
        recency_score,

        -- metrics in the window (money in the base currency)
        has_purchase_in_window,
        monetary,
        frequency,
        recency_days,
        gross_margin

    from explained

)

select * from final
