-- One row per customer and as-of date: every date built so far (customer_tiers keeps each
-- date's rows), narrowed to how the tier was decided and how it moved.
with

customer_tiers as (

    select * from {{ ref('customer_tiers') }}

),

final as (

    select
        -- ids
        customer_id,

        -- dates
        as_of_date,

        -- tier and how it was decided
        value_tier,
        value_tier_rank,
        value_score,
        score_tier,
        computed_tier,
        is_hysteresis_held,
        is_override,

        -- change against the previous run
        previous_value_tier,
        tier_change,

        -- money in the base currency
        monetary

    from customer_tiers

)

select * from final
