{%- set rules = var('lifecycle') -%}
{%- set trend_days = rules.trend_days | int -%}
-- One row per customer and as-of date A: the lifecycle stage and the metrics that decided
-- it, from the completed orders dated on or before A. Rules (var lifecycle), first match
-- wins: never_purchased (no completed order), churned (last order more than churn_days
-- ago), new (first order less than new_days ago), growing / declining (revenue of the
-- last trend_days against the trend_days before: up by growth_threshold or more, or from
-- nothing / down by decline_threshold or more), else mature. A rerun of a date replaces
-- that date's rows.
with

customers as (

    select * from {{ ref('dim_customers') }}

),

orders as (

    select * from {{ ref('fct_orders') }}

),

population as (

    select customer_id
    from customers
    where created_at <= {{ as_of_date() }}

),

order_summary as (

    select
        customer_id,
        min(order_date) as first_purchase_date,
        max(order_date) as last_purchase_date,
        coalesce(sum(counted_revenue) filter (
            where {{ in_window('order_date', trend_days) }}
        ), 0) as recent_revenue,
        coalesce(sum(counted_revenue) filter (
            where order_date > {{ as_of_date() }} - {{ 2 * trend_days }}
            and order_date <= {{ as_of_date() }} - {{ trend_days }}
        ), 0) as prior_revenue
    from orders
    where status = 'completed'
        and order_date <= {{ as_of_date() }}
    group by customer_id

),

metrics as (

    select
        population.customer_id,
        order_summary.first_purchase_date,
        order_summary.last_purchase_date,
        {{ as_of_date() }} - order_summary.first_purchase_date as tenure_days,
        {{ as_of_date() }} - order_summary.last_purchase_date as recency_days,
        coalesce(order_summary.recent_revenue, 0) as recent_revenue,
        coalesce(order_summary.prior_revenue, 0) as prior_revenue,
        round(
            (order_summary.recent_revenue - order_summary.prior_revenue)
            / nullif(order_summary.prior_revenue, 0),
            4
        ) as revenue_growth_rate
    from population
    left join order_summary
        on population.customer_id = order_summary.customer_id

),

staged as (

    select
        *,
        case
            when first_purchase_date is null then 'never_purchased'
            when recency_days > {{ rules.churn_days | int }} then 'churned'
            when tenure_days < {{ rules.new_days | int }} then 'new'
            when prior_revenue = 0 and recent_revenue > 0 then 'growing'
            when revenue_growth_rate >= {{ sql_number(rules.growth_threshold) }} then 'growing'
            when revenue_growth_rate <= -{{ sql_number(rules.decline_threshold) }}
                then 'declining'
            else 'mature'
        end as lifecycle_stage
    from metrics

),

final as (

    select
        -- ids
        customer_id,

        -- dates
        {{ as_of_date() }} as as_of_date,
        first_purchase_date,
        last_purchase_date,

        -- stage and the metrics that decided it
        lifecycle_stage,
        tenure_days,
        recency_days,
        recent_revenue,
        prior_revenue,
        revenue_growth_rate,
        case lifecycle_stage
            when 'never_purchased' then 'no completed order'
            when 'churned'
                then 'last order ' || recency_days || ' days ago (more than '
                    || {{ rules.churn_days | int }} || ')'
            when 'new'
                then 'first order ' || tenure_days || ' days ago (less than '
                    || {{ rules.new_days | int }} || ')'
            else 'revenue of the last ' || {{ trend_days }} || ' days '
                || {{ format_amount('recent_revenue') }} || ' against '
                || {{ format_amount('prior_revenue') }} || ' the ' || {{ trend_days }}
                || ' days before'
                || coalesce(' (' || {{ format_share('revenue_growth_rate') }} || ')', '')
        end as lifecycle_reason

    from staged

)

select * from final
