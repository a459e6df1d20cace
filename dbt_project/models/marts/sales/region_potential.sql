{%- set rules = var('region_potential') -%}
{%- set months_back = rules.window_months | int -%}
{%- set weights = rules.weights -%}
{%- set top_tier = var('tier_levels')[0].name -%}
{%- set wallet_cap = sql_number(rules.wallet_cap) -%}
-- One row per region x month (the customer's region, 'unknown' when not delivered), from the
-- first month with an order up to the month of the as-of date A, measured over the last
-- var region_potential.window_months months up to the month's end (A in the month of A):
-- known customers, penetration (active / known), revenue per active customer against the
-- median of the regions, the share of known customers in the top tier on A, and growth
-- against the window_months months before. potential_index (0..1) weighs four components
-- (var region_potential.weights, adding up to 1):
--   headroom        1 - penetration: customers the region knows but does not sell to;
--   wallet          min(revenue per active / the regions' median, wallet_cap) / wallet_cap;
--   high_tier_share known customers in the top value tier on A;
--   growth          (growth rate clamped to -1..1 + 1) / 2; 0.5 without revenue before.
-- potential_rank ranks the regions of a month by it (1 = most potential), which the report
-- uses to rank regions for sales coverage. Rebuilt whole every run.
with

customers as (

    select * from {{ ref('dim_customers') }}

),

orders as (

    select * from {{ ref('fct_orders') }}
    where order_date <= {{ as_of_date() }}
        and status = 'completed'

),

customer_tiers as (

    select * from {{ ref('customer_tiers') }}
    where as_of_date = {{ as_of_date() }}

),

customer_regions as (

    select
        customers.customer_id,
        customers.created_at,
        coalesce(customers.region, 'unknown') as region,
        coalesce(customer_tiers.value_tier = {{ sql_literal(top_tier) }}, false) as is_top_tier
    from customers
    left join customer_tiers
        on customers.customer_id = customer_tiers.customer_id

),

months as (

    {% call months_to_as_of() %}
        cast(month_start - interval '{{ months_back - 1 }} months' as date) as window_start_date,
        cast(month_start - interval '{{ 2 * months_back - 1 }} months' as date) as previous_window_start_date
    {% endcall %}

),

customer_months as (

    select
        customer_id,
        cast(date_trunc('month', order_date) as date) as month_start_date,
        sum(counted_revenue) as revenue
    from orders
    group by customer_id, date_trunc('month', order_date)

),

windows as (

    -- each customer's revenue in the month's window and in the window before
    select
        months.month_start_date,
        customer_months.customer_id,
        sum(customer_months.revenue) filter (
            where customer_months.month_start_date >= months.window_start_date
        ) as revenue,
        sum(customer_months.revenue) filter (
            where customer_months.month_start_date < months.window_start_date
        ) as previous_revenue
    from months
    inner join customer_months
        on months.previous_window_start_date <= customer_months.month_start_date
            and months.month_start_date >= customer_months.month_start_date
    group by months.month_start_date, customer_months.customer_id

),

region_months as (

    -- known: created by the month's end, or buying in the window whatever the CRM says
    select
        months.month_start_date,
        months.month_end_date,
        months.window_start_date,
        customer_regions.region,
        count(*) as known_customers,
        count(*) filter (where windows.revenue is not null) as active_customers,
        coalesce(sum(windows.revenue), 0) as revenue,
        coalesce(sum(windows.previous_revenue), 0) as previous_window_revenue,
        count(*) filter (where customer_regions.is_top_tier) as top_tier_customers
    from months
    inner join customer_regions
        on true
    left join windows
        on months.month_start_date = windows.month_start_date
            and customer_regions.customer_id = windows.customer_id
    where customer_regions.created_at <= months.month_end_date
        or windows.revenue is not null
    group by months.month_start_date, months.month_end_date, months.window_start_date, customer_regions.region

),

measured as (

    select
        *,
        cast(active_customers as numeric) / known_customers as penetration_exact,
        revenue / nullif(active_customers, 0) as revenue_per_active_exact,
        cast(top_tier_customers as numeric) / known_customers as high_tier_share_exact,
        (revenue - previous_window_revenue) / nullif(previous_window_revenue, 0) as growth_rate_exact
    from region_months

),

medians as (

    select
        month_start_date,
        cast(percentile_cont(0.5) within group (order by revenue_per_active_exact) as numeric)
            as median_revenue_per_active
    from measured
    where active_customers > 0
    group by month_start_date

),

components as (

    select
        measured.*,
        medians.median_revenue_per_active,
        measured.revenue_per_active_exact / nullif(medians.median_revenue_per_active, 0) as wallet_ratio_exact,
        1 - measured.penetration_exact as headroom_component,
        -- least() and greatest() skip nulls in PostgreSQL: the null cases come first
        case
            when measured.active_customers = 0 or coalesce(medians.median_revenue_per_active, 0) = 0 then 0
            else
                least(measured.revenue_per_active_exact / medians.median_revenue_per_active, {{ wallet_cap }})
                / {{ wallet_cap }}
        end as wallet_component,
        measured.high_tier_share_exact as high_tier_component,
        case
            when measured.growth_rate_exact is null then 0.5
            else (least(greatest(measured.growth_rate_exact, -1), 1) + 1) / 2
        end as growth_component
    from measured
    left join medians
        on measured.month_start_date = medians.month_start_date

),

indexed as (

    select
        *,
        {{ sql_number(weights.headroom) }} * headroom_component
        + {{ sql_number(weights.wallet) }} * wallet_component
        + {{ sql_number(weights.high_tier_share) }} * high_tier_component
        + {{ sql_number(weights.growth) }} * growth_component as potential_index_exact
    from components

),

final as (

    select
        -- ids
        month_start_date,
        region,

        -- dates
        {{ as_of_date() }} as as_of_date,
        month_end_date,
        window_start_date,

        -- customers
        known_customers,
        active_customers,
        round(penetration_exact, 4) as penetration,
        top_tier_customers,
        round(high_tier_share_exact, 4) as high_tier_share,

        -- money (base currency) over the window
        revenue,
        round(revenue_per_active_exact, 2) as revenue_per_active_customer,
        round(median_revenue_per_active, 2) as median_revenue_per_active,
        round(wallet_ratio_exact, 4) as wallet_ratio,
        previous_window_revenue,
        round(growth_rate_exact, 4) as growth_rate,

        -- the index and its components (0..1)
        round(headroom_component, 4) as headroom_component,
        round(wallet_component, 4) as wallet_component,
        round(high_tier_component, 4) as high_tier_component,
        round(growth_component, 4) as growth_component,
        round(potential_index_exact, 4) as potential_index,
        rank() over (partition by month_start_date order by potential_index_exact desc) as potential_rank,
        'index ' || to_char(potential_index_exact, 'FM0.0000') || ': penetration '
        || {{ format_share('penetration_exact') }} || ' (' || active_customers || ' of '
        || known_customers || ' known customers active in ' || {{ months_back }} || ' months), '
        || case
            when active_customers = 0 then 'no revenue per active customer'
            else 'revenue per active ' || {{ format_amount('revenue_per_active_exact') }} || ' against a median of '
                || {{ format_amount('median_revenue_per_active') }}
        end
        || ', top tier ' || {{ format_share('high_tier_share_exact') }} || ', growth '
        || case
            when growth_rate_exact is null then 'unknown (no revenue before)'
            else {{ format_share('growth_rate_exact') }}
        end as potential_reason

    from indexed

)

select * from final
