-- One row per customer on the as-of date A: the weighted value score and the tiers it gives
-- by score alone.
--
-- The value score (var tier_weights) weighs 0..1 components, each a percentile rank among
-- the customers with a purchase in the RFM window: purchasing power (monetary), frequency,
-- profit (net contribution after cost-to-serve), recency and, on a night with a CLV fit in
-- use, the predicted value (customer_clv, written by the DAG's `clv` step: this model runs
-- after it, in the `tiers` group). base_value_score is the four historical components'
-- score alone. score_tier is the tier by score alone (var tier_method: percentile or
-- pareto); the three one-dimension tiers rank spend, frequency and net contribution.
with

customer_rfm as (

    select * from {{ ref('customer_rfm') }}
    where as_of_date = {{ as_of_date() }}

),

customer_profitability as (

    select * from {{ ref('customer_profitability') }}
    where as_of_date = {{ as_of_date() }}

),

customer_clv as (

    -- predicted lifetime value (tierflow.clv, the DAG's `clv` step): rows for A only on a
    -- night with an accepted CLV fit in use
    {% if has_clv_predictions() %}
    select * from {{ source('clv', 'customer_clv') }}
    where as_of_date = {{ as_of_date() }}
    {% else %}
    select
        cast(null as text) as customer_id,
        cast(null as numeric) as predicted_clv_12m,
        cast(null as numeric) as probability_alive,
        cast(null as text) as fit_id
    where false
    {% endif %}

),

customer_metrics as (

    select
        customer_rfm.customer_id,
        customer_rfm.monetary,
        customer_rfm.frequency,
        customer_rfm.recency_days,
        -- profit is the net contribution after cost-to-serve (SPEC), in the same window
        coalesce(customer_profitability.gross_margin, 0) as gross_margin,
        coalesce(customer_profitability.net_contribution, 0) as net_contribution,
        customer_rfm.has_purchase_in_window,
        customer_rfm.rfm_segment,
        -- predicted value (null: never purchased, or no CLV fit in use tonight)
        customer_clv.predicted_clv_12m,
        customer_clv.probability_alive,
        customer_clv.fit_id as clv_fit_id
    from customer_rfm
    left join customer_profitability
        on customer_rfm.customer_id = customer_profitability.customer_id
    left join customer_clv
        on customer_rfm.customer_id = customer_clv.customer_id

),

components as (

    select
        *,
        {{ value_component_columns() }},
        -- the predicted value counts on a night with a CLV fit in use (any customer has one)
        count(predicted_clv_12m) over () > 0 as has_predicted_value,
        -- its component: cume_dist of predicted_clv_12m among the customers that have one
        -- (every customer with a purchase, on such a night); 0 for the others
        case
            when predicted_clv_12m is not null
                then cast(cume_dist() over (
                        partition by predicted_clv_12m is not null order by predicted_clv_12m
                    ) as numeric)
            when count(predicted_clv_12m) over () > 0 then 0
        end as predicted_value_score,
        rank() over (order by predicted_clv_12m desc nulls last) as predicted_value_rank,
        {{ rank_position('predicted_clv_12m desc nulls last') }} as predicted_value_position
    from customer_metrics

),

value_scored as (

    select
        *,
        {{ value_score_expr(predicted=true) }} as value_score,
        -- the score the four historical components alone give (= value_score without a CLV fit)
        {{ value_score_expr() }} as base_value_score
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
        {{ rank_position('value_score desc') }} as value_position,
        rank() over (order by monetary desc) as purchasing_power_rank,
        {{ rank_position('monetary desc') }} as purchasing_power_position,
        rank() over (order by frequency desc) as frequency_rank,
        {{ rank_position('frequency desc') }} as frequency_position,
        rank() over (order by net_contribution desc) as profit_rank,
        {{ rank_position('net_contribution desc') }} as profit_position,
        -- pareto: share of the total positive net contribution held by customers with a
        -- strictly higher value score (running sum incl. peers minus the peers)
        sum(greatest(net_contribution, 0)) over (order by value_score desc)
        - sum(greatest(net_contribution, 0)) over (partition by value_score)
            as contribution_ranked_above,
        sum(greatest(net_contribution, 0)) over () as contribution_total,
        -- the same positions by the score without the predicted value (tier reasons say when
        -- the predicted value decided the tier)
        {{ rank_position('base_value_score desc') }} as base_value_position,
        sum(greatest(net_contribution, 0)) over (order by base_value_score desc)
        - sum(greatest(net_contribution, 0)) over (partition by base_value_score)
            as base_contribution_ranked_above
    from value_scored

),

tiered_by_score as (

    select
        *,
        {{ score_tier_expr() }} as score_tier,
        {{ score_tier_expr('base_') }} as base_score_tier,
        {{ tier_level('purchasing_power_position') }} as purchasing_power_tier,
        {{ tier_level('frequency_position') }} as frequency_tier,
        {{ tier_level('profit_position') }} as profit_tier
    from positioned

),

final as (

    select * from tiered_by_score

)

select * from final
