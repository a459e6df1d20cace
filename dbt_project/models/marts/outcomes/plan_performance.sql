{%- set z = var('uplift_z', 1.959964) -%}
{#- the published plans read through their (as_of_date, plan_period) index (the publisher makes
    it, tierflow.publish.HISTORY_INDEXES): night by night, never whole -#}
{%- set nights_by_index = has_published_history('allocation_plan_customer')
    and has_published_index('allocation_plan_customer', ['as_of_date', 'plan_period']) -%}
-- Did the plan work? One row per closed plan period x value tier x action (assigned_action:
-- the action the rules gave, control customers included) and one per period x tier over all
-- actions (primary_action 'all'), on as-of date A.
--
-- A plan period is closed when it ended before A. Its plan is the one BI was shown on the
-- period's last published night (bi.allocation_plan_customer): treated customers got budget
-- and action, control customers (is_control, allocation.control_share) got nothing. Realised
-- contribution of a customer in a period = gross margin (net revenue - cost of goods) of its
-- completed orders dated in the period, as known on A; its change = this period minus the
-- period before (same length). Uplift = mean change of the treated - mean change of control,
-- per customer, with a normal-approximation interval: uplift +- z x sqrt(s_t^2 / n_t + s_c^2 /
-- n_c) (Welch's standard error, sample variances; z from outcomes.confidence, var uplift_z),
-- null when either group has fewer than 2 customers. uplift_total = uplift x treated customers
-- (the plan's incremental contribution), realised_roi = uplift_total / budget_spent.
-- Cost-to-serve is left out of the contribution on purpose: it contains the plan's own spend
-- (activities), which realised_roi already divides by.
with recursive  -- published_nights

{% if has_published_history('allocation_plan_customer') %}
published_plans as not materialized (

    select
        customer_id,
        as_of_date,
        plan_period,
        value_tier,
        tier_rank,
        allocated_budget,
        expected_return,
        {{ published_column_or('allocation_plan_customer', 'is_control', 'false') }} as is_control,
        {{ published_column_or('allocation_plan_customer', 'assigned_action', 'primary_action') }}
            as assigned_action
    from {{ source('published', 'allocation_plan_customer') }}
    where as_of_date < {{ as_of_date() }}

),
{% else %}
published_plans as (

    -- nothing published yet (the first night): no plan to judge
    select
        cast(null as text) as customer_id,
        cast(null as date) as as_of_date,
        cast(null as text) as plan_period,
        cast(null as text) as value_tier,
        cast(null as integer) as tier_rank,
        cast(null as numeric) as allocated_budget,
        cast(null as numeric) as expected_return,
        cast(null as boolean) as is_control,
        cast(null as text) as assigned_action
    where false

),
{% endif %}

{% if nights_by_index %}
published_nights (as_of_date) as (

    -- the nights published before A, one probe of the as_of_date index each (a loose index
    -- scan), not every plan row of every night: the table grows by every customer each night
    -- (6 M rows at 100,000 customers after 60 nights, read twice in 3.4 s of the model's
    -- 5.6 s; docs/performance.md "Stop 29")
    select min(as_of_date)
    from {{ source('published', 'allocation_plan_customer') }}
    where as_of_date < {{ as_of_date() }}

    union all

    select (
        select min(later.as_of_date)
        from {{ source('published', 'allocation_plan_customer') }} as later
        where later.as_of_date > published_nights.as_of_date
            and later.as_of_date < {{ as_of_date() }}
    )
    from published_nights
    where published_nights.as_of_date is not null

),

night_periods as (

    -- a night's plan has one plan period (its label for the night's as-of date)
    select
        published_nights.as_of_date,
        (
            -- from the index alone (ordered by its columns; unordered, the planner may read
            -- the table from its start until the night's rows begin)
            select night.plan_period
            from {{ source('published', 'allocation_plan_customer') }} as night
            where night.as_of_date = published_nights.as_of_date
            order by night.as_of_date, night.plan_period
            limit 1
        ) as plan_period
    from published_nights
    where published_nights.as_of_date is not null

),
{% else %}
night_periods as (

    -- no as_of_date index on the published plans (or none published): every plan row
    select distinct
        as_of_date,
        plan_period
    from published_plans

),
{% endif %}

orders as (

    select * from {{ ref('fct_orders') }}
    where order_date <= {{ as_of_date() }}
        and status = 'completed'

),

plan_nights as (

    -- each closed period's last published night
    select
        plan_period,
        cast(date_trunc({{ plan_period_unit() }}, max(as_of_date)) as date) as period_start_date,
        max(as_of_date) as plan_as_of_date
    from night_periods
    group by plan_period

),

closed_periods as (

    select
        plan_period,
        plan_as_of_date,
        period_start_date,
        cast(period_start_date + cast('1 ' || {{ plan_period_unit() }} as interval) - interval '1 day' as date)
            as period_end_date,
        cast(period_start_date - cast('1 ' || {{ plan_period_unit() }} as interval) as date)
            as previous_start_date
    from plan_nights

),

plans as (

    select
        published_plans.*,
        closed_periods.period_start_date,
        closed_periods.period_end_date,
        closed_periods.previous_start_date,
        closed_periods.plan_as_of_date
    {% if nights_by_index -%}
    -- each closed period's night through the index, not a join with every night's plans
    from closed_periods
    cross join lateral (
        select *
        from published_plans
        where published_plans.as_of_date = closed_periods.plan_as_of_date
            and published_plans.plan_period = closed_periods.plan_period
        offset 0  -- kept a subquery per period (not flattened into a join with every night)
    ) as published_plans
    {%- else -%}
    from published_plans
    inner join closed_periods
        on published_plans.plan_period = closed_periods.plan_period
            and published_plans.as_of_date = closed_periods.plan_as_of_date
    {%- endif %}
    where closed_periods.period_end_date < {{ as_of_date() }}

),

customer_outcomes as (

    select
        plans.customer_id,
        plans.plan_period,
        plans.plan_as_of_date,
        plans.period_start_date,
        plans.period_end_date,
        plans.value_tier,
        plans.tier_rank,
        plans.assigned_action,
        plans.is_control,
        plans.allocated_budget,
        plans.expected_return,
        coalesce(sum(orders.gross_margin) filter (
            where orders.order_date >= plans.period_start_date
        ), 0) as contribution,
        coalesce(sum(orders.gross_margin) filter (
            where orders.order_date < plans.period_start_date
        ), 0) as previous_contribution
    from plans
    left join orders
        on plans.customer_id = orders.customer_id
            and plans.previous_start_date <= orders.order_date
            and plans.period_end_date >= orders.order_date
    group by
        plans.customer_id,
        plans.plan_period,
        plans.plan_as_of_date,
        plans.period_start_date,
        plans.period_end_date,
        plans.value_tier,
        plans.tier_rank,
        plans.assigned_action,
        plans.is_control,
        plans.allocated_budget,
        plans.expected_return

),

by_action as (

    select
        plan_period,
        plan_as_of_date,
        period_start_date,
        period_end_date,
        value_tier,
        tier_rank,
        assigned_action as primary_action,
        is_control,
        allocated_budget,
        expected_return,
        contribution - previous_contribution as contribution_change
    from customer_outcomes

),

by_tier as (

    select
        plan_period,
        plan_as_of_date,
        period_start_date,
        period_end_date,
        value_tier,
        tier_rank,
        'all' as primary_action,
        is_control,
        allocated_budget,
        expected_return,
        contribution - previous_contribution as contribution_change
    from customer_outcomes

),

groups as (

    select
        plan_period,
        plan_as_of_date,
        period_start_date,
        period_end_date,
        value_tier,
        tier_rank,
        primary_action,
        count(*) filter (where not is_control) as treated_customers,
        count(*) filter (where is_control) as control_customers,
        coalesce(sum(allocated_budget) filter (where not is_control), 0) as budget_spent,
        coalesce(sum(expected_return) filter (where not is_control), 0) as expected_return,
        avg(contribution_change) filter (where not is_control) as treated_change,
        avg(contribution_change) filter (where is_control) as control_change,
        var_samp(contribution_change) filter (where not is_control) as treated_variance,
        var_samp(contribution_change) filter (where is_control) as control_variance
    from (
        select * from by_action
        union all
        select * from by_tier
    ) as unioned
    group by
        plan_period,
        plan_as_of_date,
        period_start_date,
        period_end_date,
        value_tier,
        tier_rank,
        primary_action

),

estimates as (

    select
        *,
        treated_change - control_change as uplift,
        sqrt(treated_variance / treated_customers + control_variance / control_customers)
            as uplift_standard_error
    from groups

),

final as (

    select
        -- the plan judged
        plan_period,
        plan_as_of_date,
        period_start_date,
        period_end_date,
        value_tier,
        tier_rank,
        primary_action,

        -- who
        treated_customers,
        control_customers,

        -- money (base currency)
        round(budget_spent, 2) as budget_spent,
        round(expected_return, 2) as expected_return,
        round(treated_change, 2) as treated_contribution_change,
        round(control_change, 2) as control_contribution_change,
        round(uplift, 2) as uplift_per_customer,
        round(uplift - {{ z }} * uplift_standard_error, 2) as uplift_ci_low,
        round(uplift + {{ z }} * uplift_standard_error, 2) as uplift_ci_high,
        round(uplift * treated_customers, 2) as uplift_total,
        round((uplift - {{ z }} * uplift_standard_error) * treated_customers, 2) as uplift_total_ci_low,
        round((uplift + {{ z }} * uplift_standard_error) * treated_customers, 2) as uplift_total_ci_high,
        round(uplift * treated_customers / nullif(budget_spent, 0), 4) as realised_roi,
        round(expected_return / nullif(budget_spent, 0), 4) as expected_roi,
        coalesce(
            uplift - {{ z }} * uplift_standard_error > 0
            or uplift + {{ z }} * uplift_standard_error < 0,
            false
        ) as is_significant,
        cast({{ z }} as numeric) as interval_z,

        -- dates
        {{ as_of_date() }} as as_of_date

    from estimates

)

select * from final
