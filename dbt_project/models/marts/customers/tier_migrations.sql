-- One row per as-of date, from tier and to tier: how many customers moved from their
-- previous value tier (customer_tiers.previous_value_tier, the latest earlier date built)
-- to their value tier on that date, and their revenue in the RFM window. from_tier is
-- 'new' for customers without a previous tier (or one that is no longer a configured
-- level). Every (from, to) pair of the configured levels has a row, also with 0 customers.
with

customer_tiers as (

    select * from {{ ref('customer_tiers') }}

),

tier_levels as (

    {{ tier_levels_rows() }}

),

as_of_dates as (

    select distinct as_of_date
    from customer_tiers

),

from_tiers as (

    select
        cast('new' as text) as from_tier,
        cast(null as integer) as from_tier_rank
    union all
    select
        tier_name as from_tier,
        tier_rank as from_tier_rank
    from tier_levels

),

grid as (

    select
        as_of_dates.as_of_date,
        from_tiers.from_tier,
        from_tiers.from_tier_rank,
        tier_levels.tier_name as to_tier,
        tier_levels.tier_rank as to_tier_rank
    from as_of_dates
    cross join from_tiers
    cross join tier_levels

),

moves as (

    select
        as_of_date,
        value_tier as to_tier,
        case when tier_change = 'new' then 'new' else previous_value_tier end as from_tier,
        count(*) as customers,
        sum(monetary) as revenue_in_window
    from customer_tiers
    group by
        as_of_date,
        value_tier,
        case when tier_change = 'new' then 'new' else previous_value_tier end

),

final as (

    select
        -- keys
        grid.as_of_date,
        grid.from_tier,
        grid.to_tier,

        -- movement
        grid.from_tier_rank,
        grid.to_tier_rank,
        case
            when grid.from_tier_rank is null then 'new'
            when grid.to_tier_rank < grid.from_tier_rank then 'up'
            when grid.to_tier_rank > grid.from_tier_rank then 'down'
            else 'same'
        end as tier_change,

        -- customers and their revenue in the window (base currency)
        coalesce(moves.customers, 0) as customers,
        coalesce(moves.revenue_in_window, 0) as revenue_in_window

    from grid
    left join moves
        on
            grid.as_of_date = moves.as_of_date
            and grid.from_tier = moves.from_tier
            and grid.to_tier = moves.to_tier

)

select * from final
