-- One row per account group and as-of date A. An account group is a parent customer
-- (parent_customer_id) with the customers that name it; one level only: a customer's
-- group is its direct parent, or itself when it is a parent without a parent of its own.
-- Groups are tiered as if each were one customer: every group and every customer outside
-- any group is an "account"; accounts get the value score and tier of customer_tiers (same
-- components, weights, method and levels) from their summed metrics (spend, orders and
-- net contribution summed, recency of the most recent member), ranked among all accounts.
-- No hysteresis or overrides apply to groups. A rerun of a date replaces its rows.
with

customers as (

    select * from {{ ref('dim_customers') }}

),

customer_rfm as (

    select * from {{ ref('customer_rfm') }}
    where as_of_date = {{ as_of_date() }}

),

customer_profitability as (

    select * from {{ ref('customer_profitability') }}
    where as_of_date = {{ as_of_date() }}

),

population as (

    select
        customer_rfm.customer_id,
        customers.parent_customer_id,
        customer_rfm.monetary,
        customer_rfm.frequency,
        customer_rfm.recency_days,
        customer_rfm.has_purchase_in_window,
        coalesce(customer_profitability.gross_margin, 0) as gross_margin,
        coalesce(customer_profitability.net_contribution, 0) as net_contribution
    from customer_rfm
    inner join customers
        on customer_rfm.customer_id = customers.customer_id
    left join customer_profitability
        on customer_rfm.customer_id = customer_profitability.customer_id

),

group_heads as (

    select distinct parent_customer_id as customer_id
    from population
    where parent_customer_id is not null

),

memberships as (

    select
        population.*,
        coalesce(
            population.parent_customer_id,
            group_heads.customer_id
        ) as account_group_id
    from population
    left join group_heads
        on population.customer_id = group_heads.customer_id

),

accounts as (

    -- a group is one account, a customer outside any group is its own account
    select
        coalesce(account_group_id, customer_id) as account_id,
        account_group_id is not null as is_group,
        count(*) as members,
        string_agg(customer_id, ', ' order by customer_id) as member_customer_ids,
        sum(monetary) as monetary,
        cast(sum(frequency) as bigint) as frequency,
        min(recency_days) as recency_days,
        sum(gross_margin) as gross_margin,
        sum(net_contribution) as net_contribution,
        bool_or(has_purchase_in_window) as has_purchase_in_window
    from memberships
    group by coalesce(account_group_id, customer_id), account_group_id is not null

),

components as (

    select
        *,
        {{ value_component_columns() }}
    from accounts

),

value_scored as (

    select
        *,
        {{ value_score_expr() }} as value_score
    from components

),

positioned as (

    select
        *,
        count(*) over () as account_count,
        rank() over (order by value_score desc) as value_rank,
        {{ rank_position('value_score desc') }} as value_position,
        sum(greatest(net_contribution, 0)) over (order by value_score desc)
        - sum(greatest(net_contribution, 0)) over (partition by value_score)
            as contribution_ranked_above,
        sum(greatest(net_contribution, 0)) over () as contribution_total
    from value_scored

),

tiered as (

    select
        *,
        {{ score_tier_expr() }} as value_tier
    from positioned

),

final as (

    select
        -- ids
        tiered.account_id as account_group_id,

        -- dates
        {{ as_of_date() }} as as_of_date,

        -- group
        customers.customer_name as account_group_name,
        tiered.members,
        tiered.member_customer_ids,

        -- tier
        tiered.value_tier,
        {{ tier_rank('tiered.value_tier') }} as value_tier_rank,
        tiered.value_score,
        tiered.value_rank,
        tiered.account_count,
        tiered.value_tier || ': group of ' || tiered.members
        || case when tiered.members = 1 then ' customer' else ' customers' end
        || ' (' || tiered.member_customer_ids || '), value score '
        || to_char(tiered.value_score, 'FM0.0000') || ' ranks ' || tiered.value_rank
        || ' of ' || tiered.account_count || ' accounts (groups and customers outside groups)'
        || ' (spend ' || {{ format_amount('tiered.monetary') }} || ' ' || {{ base_currency() }}
        || ', ' || tiered.frequency
        || case when tiered.frequency = 1 then ' order' else ' orders' end
        || coalesce(', last order ' || tiered.recency_days || ' days ago', ', never ordered')
        || ')' as tier_reason,

        -- value score components (0..1)
        tiered.purchasing_power_score,
        tiered.frequency_score,
        tiered.profit_score,
        tiered.recency_score,

        -- metrics of the members in the window (money in the base currency)
        tiered.has_purchase_in_window,
        tiered.monetary,
        tiered.frequency,
        tiered.recency_days,
        tiered.gross_margin,
        tiered.net_contribution

    from tiered
    left join customers
        on tiered.account_id = customers.customer_id
    where tiered.is_group

)

select * from final
