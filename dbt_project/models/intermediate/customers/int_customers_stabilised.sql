{%- set margin = sql_number(var('tier_hysteresis_margin')) -%}
-- One row per customer on the as-of date A: the computed tier, i.e. the tier by score alone
-- (int_customers_scored) stabilised by hysteresis against the customer's previous computed
-- tier, read from what BI was shown (the published customer_tiers).
--
-- Hysteresis (var tier_hysteresis_margin, score units; 0 disables it), with the cutoffs of
-- int_tier_cutoffs_computed. With p the previous computed tier and s the score tier
-- (1 = best): s < p moves up to the best tier t in [s, p) with value_score >= cutoff(t) +
-- margin; s > p moves down to the worst tier t + 1 in (p, s] with value_score <= cutoff(t) -
-- margin; otherwise the customer stays at p. Overrides never count: p is the previous
-- computed tier, not the value tier. A customer without a previous tier takes its score tier.
with

customers_scored as (

    select * from {{ ref('int_customers_scored') }}

),

tier_cutoffs as (

    select * from {{ ref('int_tier_cutoffs_computed') }}

),

{% if has_published_history('customer_tiers') %}
published_tiers as (

    select * from {{ source('published', 'customer_tiers') }}

),

previous_date as (

    -- the latest earlier as-of date BI was shown: published, so it passed every quality
    -- gate (a failed night is never anyone's previous tier)
    select max(as_of_date) as as_of_date
    from published_tiers
    where as_of_date < {{ as_of_date() }}

),

previous_tiers as (

    select
        published_tiers.customer_id,
        published_tiers.value_tier,
        published_tiers.computed_tier
    from published_tiers
    inner join previous_date
        on published_tiers.as_of_date = previous_date.as_of_date

),
{% endif %}

with_previous as (

    select
        customers_scored.customer_id,
        customers_scored.value_score,
        {{ tier_rank('customers_scored.score_tier') }} as score_tier_rank,
        {% if has_published_history('customer_tiers') -%}
        previous_tiers.value_tier as previous_value_tier,
        previous_tiers.computed_tier as previous_computed_tier,
        {{ tier_rank('previous_tiers.computed_tier') }} as previous_computed_rank
        {%- else -%}
        cast(null as text) as previous_value_tier,
        cast(null as text) as previous_computed_tier,
        cast(null as integer) as previous_computed_rank
        {%- endif %}
    from customers_scored
    {% if has_published_history('customer_tiers') -%}
    left join previous_tiers
        on customers_scored.customer_id = previous_tiers.customer_id
    {%- endif %}

),

hysteresis_moves as (

    select
        with_previous.customer_id,
        -- up: the best tier t in [s, p) whose cutoff the score passes by the margin
        min(tier_cutoffs.tier_rank) filter (
            where tier_cutoffs.tier_rank >= with_previous.score_tier_rank
            and tier_cutoffs.tier_rank < with_previous.previous_computed_rank
            and with_previous.value_score >= tier_cutoffs.cutoff + {{ margin }}
        ) as up_rank,
        -- down: the worst tier t + 1 in (p, s] whose upper cutoff t the score is below
        -- by the margin
        max(tier_cutoffs.tier_rank + 1) filter (
            where tier_cutoffs.tier_rank >= with_previous.previous_computed_rank
            and tier_cutoffs.tier_rank < with_previous.score_tier_rank
            and with_previous.value_score <= tier_cutoffs.cutoff - {{ margin }}
        ) as down_rank
    from with_previous
    cross join tier_cutoffs
    group by with_previous.customer_id

),

stabilised as (

    select
        with_previous.*,
        case
            when with_previous.previous_computed_rank is null
                or with_previous.score_tier_rank = with_previous.previous_computed_rank
                then with_previous.score_tier_rank
            when with_previous.score_tier_rank < with_previous.previous_computed_rank
                then coalesce(hysteresis_moves.up_rank, with_previous.previous_computed_rank)
            else coalesce(hysteresis_moves.down_rank, with_previous.previous_computed_rank)
        end as computed_tier_rank
    from with_previous
    left join hysteresis_moves
        on with_previous.customer_id = hysteresis_moves.customer_id

),

held_back as (

    select
        stabilised.customer_id,
        stabilised.previous_value_tier,
        stabilised.previous_computed_tier,
        {{ tier_name('stabilised.computed_tier_rank') }} as computed_tier,
        stabilised.computed_tier_rank <> stabilised.score_tier_rank as is_hysteresis_held,
        -- the cutoff the customer did not pass by the margin: the next better tier's when
        -- it was held back from moving up, its own tier's when held from moving down
        case
            when stabilised.computed_tier_rank > stabilised.score_tier_rank then better_cutoffs.cutoff
            when stabilised.computed_tier_rank < stabilised.score_tier_rank then own_cutoffs.cutoff
        end as hysteresis_cutoff,
        case
            when stabilised.computed_tier_rank > stabilised.score_tier_rank then better_cutoffs.tier_name
            when stabilised.computed_tier_rank < stabilised.score_tier_rank then own_cutoffs.tier_name
        end as hysteresis_cutoff_tier,
        top_cutoffs.cutoff as top_tier_cutoff
    from stabilised
    left join tier_cutoffs as better_cutoffs
        on stabilised.computed_tier_rank - 1 = better_cutoffs.tier_rank
    left join tier_cutoffs as own_cutoffs
        on stabilised.computed_tier_rank = own_cutoffs.tier_rank
    left join tier_cutoffs as top_cutoffs
        on top_cutoffs.tier_rank = 1

),

final as (

    select
        -- ids
        customer_id,

        -- tiers
        previous_value_tier,
        previous_computed_tier,
        computed_tier,

        -- hysteresis
        is_hysteresis_held,
        hysteresis_cutoff,
        hysteresis_cutoff_tier,
        top_tier_cutoff

    from held_back

)

select * from final
