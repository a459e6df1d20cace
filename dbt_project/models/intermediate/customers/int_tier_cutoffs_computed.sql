-- One row per tier boundary on the as-of date A: the cutoff of tier k (the boundary between
-- k and k + 1; the worst tier has none) is the midpoint between the lowest value score whose
-- score tier is k or better and the highest score below it, the same definition for
-- percentile and pareto. The midpoint, not either edge, so that two customers trading places
-- across the boundary are treated alike by hysteresis (int_customers_stabilised): both move,
-- or both are held.
with

customers_scored as (

    select * from {{ ref('int_customers_scored') }}

),

tier_levels as (

    {{ tier_levels_rows() }}

),

computed as (

    select
        tier_levels.tier_rank,
        tier_levels.tier_name,
        -- scores have 4 decimals, so their midpoint has at most 5
        trim_scale(round((
            min(customers_scored.value_score) filter (
                where {{ tier_rank('customers_scored.score_tier') }} <= tier_levels.tier_rank
            )
            + coalesce(
                max(customers_scored.value_score) filter (
                    where {{ tier_rank('customers_scored.score_tier') }} > tier_levels.tier_rank
                ),
                min(customers_scored.value_score) filter (
                    where {{ tier_rank('customers_scored.score_tier') }} <= tier_levels.tier_rank
                )
            )
        ) / 2, 5)) as cutoff
    from tier_levels
    cross join customers_scored
    where tier_levels.tier_rank < (select max(all_levels.tier_rank) from tier_levels as all_levels)
    group by tier_levels.tier_rank, tier_levels.tier_name

),

final as (

    select * from computed

)

select * from final
