{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='as_of_date',
        on_schema_change='append_new_columns',
    )
}}
{%- set policies = var('allocation_tiers') -%}
-- One row per value tier (every level of var tier_levels, also with no customers) and
-- as-of date A: the tier's share of the plan period's budget (var allocation_budget) and
-- its service level. Amounts are rounded to cents and the rounding remainder goes to the
-- best tier, so the tiers add up to the budget exactly.
with

customer_tiers as (

    select * from {{ ref('customer_tiers') }}
    where as_of_date = {{ as_of_date() }}

),

tier_policies as (

    -- the tier levels and their allocation policy, from the vars
    select * from (
        values
        {%- for level in var('tier_levels') %}
        (
            {{ sql_literal(level.name) }},
            {{ loop.index }},
            {{ sql_number(policies[level.name].budget_share) }},
            {{ sql_literal(policies[level.name].service_level) }}
        ){{ "," if not loop.last }}
        {%- endfor %}
    ) as policies (value_tier, tier_rank, budget_share, service_level)

),

tier_totals as (

    select
        value_tier,
        count(*) as customers,
        sum(monetary) as revenue_in_window
    from customer_tiers
    group by value_tier

),

budget_rounded as (

    select
        tier_policies.value_tier,
        tier_policies.tier_rank,
        tier_policies.budget_share,
        tier_policies.service_level,
        coalesce(tier_totals.customers, 0) as customers,
        coalesce(tier_totals.revenue_in_window, 0) as revenue_in_window,
        round({{ sql_number(var('allocation_budget')) }} * tier_policies.budget_share, 2)
            as budget_rounded
    from tier_policies
    left join tier_totals
        on tier_policies.value_tier = tier_totals.value_tier

),

budget_allocated as (

    select
        *,
        budget_rounded
        + case
            when tier_rank = 1
                then round({{ sql_number(var('allocation_budget')) }}, 2)
                    - sum(budget_rounded) over ()
            else 0
        end as allocated_budget
    from budget_rounded

),

final as (

    select
        -- ids
        value_tier,

        -- dates
        {{ as_of_date() }} as as_of_date,
        {{ plan_period_label(as_of_date()) }} as plan_period,

        -- tier
        tier_rank,
        service_level,
        customers,

        -- money in the base currency
        revenue_in_window,
        budget_share,
        allocated_budget,
        round(allocated_budget / nullif(customers, 0), 2) as budget_per_customer

    from budget_allocated

)

select * from final
