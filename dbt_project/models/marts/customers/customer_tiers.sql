{%- set margin = sql_number(var('tier_hysteresis_margin')) -%}
{%- set potential = var('tier_potential') -%}
{%- set trend_days = var('lifecycle').trend_days | int -%}
-- One row per customer and as-of date A: a weighted value score and the tier it gives by
-- score alone (score_tier; var tier_method: percentile or pareto), stabilised by
-- hysteresis against the customer's previous computed tier (computed_tier), then replaced
-- by a manual override valid on A (value_tier); the three one-dimension tiers, stage,
-- credit band, high potential, account group, the reason in plain words, and the change
-- against the customer's previous value tier.
--
-- Hysteresis (var tier_hysteresis_margin, score units; 0 disables it). The cutoff of tier
-- k (the boundary between k and k + 1) is the midpoint between the lowest value score whose
-- score tier is k or better on A and the highest score below it (the same definition for
-- percentile and pareto). With p the previous
-- computed tier and s the score tier (1 = best): s < p moves up to the best tier t in
-- [s, p) with value_score >= cutoff(t) + margin; s > p moves down to the worst tier
-- t + 1 in (p, s] with value_score <= cutoff(t) - margin; otherwise the customer stays
-- at p. Overrides never count: p is the previous computed tier, not the value tier.
with

customer_rfm as (

    select * from {{ ref('customer_rfm') }}
    where as_of_date = {{ as_of_date() }}

),

customer_profitability as (

    select * from {{ ref('customer_profitability') }}
    where as_of_date = {{ as_of_date() }}

),

customers as (

    select * from {{ ref('dim_customers') }}

),

customer_lifecycle as (

    select * from {{ ref('customer_lifecycle') }}
    where as_of_date = {{ as_of_date() }}

),

customer_credit_risk as (

    select * from {{ ref('customer_credit_risk') }}
    where as_of_date = {{ as_of_date() }}

),

tier_overrides as (

    select * from {{ ref('stg_crm__tier_overrides') }}

),

account_group_tiers as (

    select * from {{ ref('account_group_tiers') }}
    where as_of_date = {{ as_of_date() }}

),

customer_profile as (

    select * from {{ ref('customer_profile') }}
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

tier_levels as (

    {{ tier_levels_rows() }}

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
        cast(rank() over (order by predicted_clv_12m desc nulls last) - 1 as numeric)
        / count(*) over () as predicted_value_position
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
        cast(rank() over (order by value_score desc) - 1 as numeric)
        / count(*) over () as value_position,
        rank() over (order by monetary desc) as purchasing_power_rank,
        cast(rank() over (order by monetary desc) - 1 as numeric)
        / count(*) over () as purchasing_power_position,
        rank() over (order by frequency desc) as frequency_rank,
        cast(rank() over (order by frequency desc) - 1 as numeric)
        / count(*) over () as frequency_position,
        rank() over (order by net_contribution desc) as profit_rank,
        cast(rank() over (order by net_contribution desc) - 1 as numeric)
        / count(*) over () as profit_position,
        -- pareto: share of the total positive net contribution held by customers with a
        -- strictly higher value score (running sum incl. peers minus the peers)
        sum(greatest(net_contribution, 0)) over (order by value_score desc)
        - sum(greatest(net_contribution, 0)) over (partition by value_score)
            as contribution_ranked_above,
        sum(greatest(net_contribution, 0)) over () as contribution_total,
        -- the same positions by the score without the predicted value (tier reasons say when
        -- the predicted value decided the tier)
        cast(rank() over (order by base_value_score desc) - 1 as numeric)
        / count(*) over () as base_value_position,
        sum(greatest(net_contribution, 0)) over (order by base_value_score desc)
        - sum(greatest(net_contribution, 0)) over (partition by base_value_score)
            as base_contribution_ranked_above
    from value_scored

),

tiered as (

    select
        *,
        {{ score_tier_expr() }} as score_tier,
        {{ score_tier_expr('base_') }} as base_score_tier,
        {{ tier_level('purchasing_power_position') }} as purchasing_power_tier,
        {{ tier_level('frequency_position') }} as frequency_tier,
        {{ tier_level('profit_position') }} as profit_tier
    from positioned

),

tier_cutoffs as (

    -- cutoff of tier k (the boundary between k and k + 1; the worst tier has none): the
    -- midpoint between the lowest value score whose score tier is k or better on A and the
    -- highest score below it. The midpoint, not either edge, so that two customers trading
    -- places across the boundary are treated alike: both move, or both are held.
    select
        tier_levels.tier_rank,
        tier_levels.tier_name,
        -- scores have 4 decimals, so their midpoint has at most 5
        trim_scale(round((
            min(tiered.value_score) filter (where {{ tier_rank('tiered.score_tier') }} <= tier_levels.tier_rank)
            + coalesce(
                max(tiered.value_score) filter (where {{ tier_rank('tiered.score_tier') }} > tier_levels.tier_rank),
                min(tiered.value_score) filter (where {{ tier_rank('tiered.score_tier') }} <= tier_levels.tier_rank)
            )
        ) / 2, 5)) as cutoff
    from tier_levels
    cross join tiered
    where tier_levels.tier_rank < (select max(all_levels.tier_rank) from tier_levels as all_levels)
    group by tier_levels.tier_rank, tier_levels.tier_name

),

with_previous as (

    select
        tiered.*,
        {{ tier_rank('tiered.score_tier') }} as score_tier_rank,
        {% if has_published_history('customer_tiers') -%}
        previous_tiers.value_tier as previous_value_tier,
        previous_tiers.computed_tier as previous_computed_tier,
        {{ tier_rank('previous_tiers.computed_tier') }} as previous_computed_rank
        {%- else -%}
        cast(null as text) as previous_value_tier,
        cast(null as text) as previous_computed_tier,
        cast(null as integer) as previous_computed_rank
        {%- endif %}
    from tiered
    {% if has_published_history('customer_tiers') -%}
    left join previous_tiers
        on tiered.customer_id = previous_tiers.customer_id
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

active_overrides as (

    -- valid on A: valid_from <= A and (valid_to is null or valid_to >= A); the latest
    -- valid_from wins
    select distinct on (customer_id)
        customer_id,
        value_tier as override_tier,
        reason as override_reason,
        set_by as override_set_by,
        valid_from as override_valid_from,
        valid_to as override_valid_to
    from tier_overrides
    where valid_from <= {{ as_of_date() }}
        and (valid_to is null or valid_to >= {{ as_of_date() }})
    order by customer_id asc, valid_from desc

),

growth_ranked as (

    -- revenue growth (customer_lifecycle) ranked among all customers; customers without
    -- revenue in the earlier period have no growth rate and rank last
    select
        customer_id,
        recent_revenue,
        prior_revenue,
        revenue_growth_rate,
        lifecycle_stage,
        rank() over (order by revenue_growth_rate desc nulls last) as growth_rank,
        cast(rank() over (order by revenue_growth_rate desc nulls last) - 1 as numeric)
        / count(*) over () as growth_position
    from customer_lifecycle

),

decided as (

    select
        stabilised.*,
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
        top_cutoffs.cutoff as top_tier_cutoff,
        active_overrides.override_tier,
        active_overrides.override_reason,
        active_overrides.override_set_by,
        active_overrides.override_valid_from,
        {{ tier_rank('active_overrides.override_tier') }} is not null as is_override,
        growth_ranked.lifecycle_stage,
        growth_ranked.recent_revenue,
        growth_ranked.prior_revenue,
        growth_ranked.revenue_growth_rate,
        growth_ranked.growth_rank,
        growth_ranked.growth_position,
        customer_credit_risk.credit_risk_band,
        customers.account_manager,
        customers.parent_customer_id,
        coalesce(customers.parent_customer_id, group_heads.account_group_id) as account_group_id
    from stabilised
    left join tier_cutoffs as better_cutoffs
        on stabilised.computed_tier_rank - 1 = better_cutoffs.tier_rank
    left join tier_cutoffs as own_cutoffs
        on stabilised.computed_tier_rank = own_cutoffs.tier_rank
    left join tier_cutoffs as top_cutoffs
        on top_cutoffs.tier_rank = 1
    left join active_overrides
        on stabilised.customer_id = active_overrides.customer_id
    left join growth_ranked
        on stabilised.customer_id = growth_ranked.customer_id
    left join customer_credit_risk
        on stabilised.customer_id = customer_credit_risk.customer_id
    left join customers
        on stabilised.customer_id = customers.customer_id
    left join account_group_tiers as group_heads
        on stabilised.customer_id = group_heads.account_group_id

),

finalised as (

    select
        decided.*,
        case when decided.is_override then decided.override_tier else decided.computed_tier end as value_tier,
        account_group_tiers.value_tier as account_group_tier
    from decided
    left join account_group_tiers
        on decided.account_group_id = account_group_tiers.account_group_id

),

explained as (

    select
        *,
        {{ tier_rank('value_tier') }} as value_tier_rank,
        -- high potential (SPEC: growth or predicted value in the top share of the base)
        coalesce(
            revenue_growth_rate >= {{ sql_number(potential.min_growth) }}
            and growth_position < {{ sql_number(potential.top_share) }},
            false
        ) as is_growth_potential,
        {% if potential.get('use_predicted_value', true) -%}
        coalesce(
            predicted_clv_12m > 0
            and predicted_value_position < {{ sql_number(potential.top_share) }},
            false
        )
        {%- else -%}
        false
        {%- endif %} as is_value_potential,
        -- why the score gave its tier
        case
            when not has_purchase_in_window
                then score_tier || ': no completed order in the last '
                    || {{ var('rfm_window_days') | int }} || ' days ('
                    || case
                        when recency_days is null then 'never ordered'
                        else 'last order ' || recency_days || ' days ago'
                    end
                    || '), value score ' || to_char(value_score, 'FM0.0000')
                    || ', ranks ' || value_rank || ' of ' || customer_count || ' customers'
            else score_tier || ': value score ' || to_char(value_score, 'FM0.0000')
                || ' ranks ' || value_rank || ' of ' || customer_count || ' customers'
                {%- if var('tier_method') == 'pareto' %}
                || case
                    when contribution_total > 0
                        then ', customers ranked above it hold '
                            || {{ format_share('contribution_ranked_above / contribution_total') }}
                            || ' of the positive net contribution'
                    else ', ' || {{ tier_band_text('score_tier') }}
                end
                {%- else %}
                || ', ' || {{ tier_band_text('score_tier') }}
                {%- endif %}
                || ' (spend ' || {{ format_amount('monetary') }} || ' ' || {{ base_currency() }}
                || ', ' || frequency || case when frequency = 1 then ' order' else ' orders' end
                || ', last order '
                || case
                    when recency_days = 0 then 'today'
                    when recency_days = 1 then '1 day ago'
                    else recency_days || ' days ago'
                end
                || ')'
        end
        -- the predicted value, when it decided the tier: without it the score gives another
        || case
            when has_predicted_value and base_score_tier <> score_tier
                then '; the predicted value decides: predicted 12-month CLV '
                    || {{ format_amount('coalesce(predicted_clv_12m, 0)') }} || ' ' || {{ base_currency() }}
                    || ' ranks ' || predicted_value_rank || ' of ' || customer_count
                    || ' customers, without it ' || base_score_tier
            else ''
        end as score_reason
    from finalised

),

reasoned as (

    select
        *,
        case
            when is_hysteresis_held
                then computed_tier || ': held by hysteresis (previous tier '
                    || previous_computed_tier || '): value score '
                    || to_char(value_score, 'FM0.0000') || ' is within the margin '
                    || trim_scale({{ margin }}) || ' of the ' || hysteresis_cutoff_tier
                    || ' cutoff ' || to_char(hysteresis_cutoff, 'FM0.0000')
                    || '; by score alone ' || score_reason
            else score_reason
        end as computed_reason,
        value_tier_rank > 1 and (is_growth_potential or is_value_potential) as is_high_potential,
        case
            when is_growth_potential
                then 'revenue of the last ' || {{ trend_days }} || ' days '
                    || {{ format_amount('recent_revenue') }} || ' against '
                    || {{ format_amount('prior_revenue') }} || ' the ' || {{ trend_days }}
                    || ' days before (+' || {{ format_share('revenue_growth_rate') }}
                    || '), growth ranks ' || growth_rank || ' of ' || customer_count
                    || ' customers (top ' || {{ format_share(sql_number(potential.top_share)) }}
                    || ')'
        end as growth_potential_text,
        case
            when is_value_potential
                then 'predicted 12-month CLV ' || {{ format_amount('predicted_clv_12m') }} || ' '
                    || {{ base_currency() }} || ' ranks ' || predicted_value_rank || ' of '
                    || customer_count || ' customers (top '
                    || {{ format_share(sql_number(potential.top_share)) }} || ')'
        end as value_potential_text
    from explained

),

final as (

    select
        -- ids
        customer_id,

        -- dates
        {{ as_of_date() }} as as_of_date,

        -- tiers
        value_tier,
        value_tier_rank,
        value_score,
        purchasing_power_tier,
        frequency_tier,
        profit_tier,
        rfm_segment,
        -- each one-dimension tier with its own reason
        purchasing_power_tier || ': spend ' || {{ format_amount('monetary') }} || ' '
        || {{ base_currency() }} || ' in the last ' || {{ var('rfm_window_days') | int }}
        || ' days ranks ' || purchasing_power_rank || ' of ' || customer_count || ' customers, '
        || {{ tier_band_text('purchasing_power_tier') }} as purchasing_power_reason,
        frequency_tier || ': ' || frequency
        || case when frequency = 1 then ' completed order' else ' completed orders' end
        || ' in the last ' || {{ var('rfm_window_days') | int }} || ' days ranks '
        || frequency_rank || ' of ' || customer_count || ' customers, '
        || {{ tier_band_text('frequency_tier') }} as frequency_reason,
        profit_tier || ': net contribution ' || {{ format_amount('net_contribution') }} || ' '
        || {{ base_currency() }} || ' after cost-to-serve in the last '
        || {{ var('rfm_window_days') | int }} || ' days ranks ' || profit_rank || ' of '
        || customer_count || ' customers, ' || {{ tier_band_text('profit_tier') }} as profit_reason,
        case
            when is_override
                then value_tier || ': override by ' || override_set_by
                    || ' (valid from ' || override_valid_from || '): ' || override_reason
                    || '; computed ' || computed_reason
            else computed_reason
        end as tier_reason,

        -- change against the previous run
        previous_value_tier,
        case
            when {{ tier_rank('previous_value_tier') }} is null then 'new'
            when value_tier_rank < {{ tier_rank('previous_value_tier') }} then 'up'
            when value_tier_rank > {{ tier_rank('previous_value_tier') }} then 'down'
            else 'same'
        end as tier_change,

        -- value score components (0..1)
        purchasing_power_score,
        frequency_score,
        profit_score,
        recency_score,
        predicted_value_score,

        -- predicted value (customer_clv; null without a CLV fit in use)
        predicted_clv_12m,
        probability_alive,
        clv_fit_id,
        base_value_score,
        base_score_tier,

        -- metrics in the window (money in the base currency)
        has_purchase_in_window,
        monetary,
        frequency,
        recency_days,
        gross_margin,
        net_contribution,

        -- how the value tier was decided: score -> hysteresis -> override
        score_tier,
        computed_tier,
        previous_computed_tier,
        is_hysteresis_held,
        top_tier_cutoff,
        is_override,
        override_tier,
        override_reason,
        override_set_by,
        override_valid_from,

        -- stage, credit, potential
        lifecycle_stage,
        credit_risk_band,
        revenue_growth_rate,
        coalesce(is_high_potential, false) as is_high_potential,
        case
            when is_high_potential
                then concat_ws('; ', growth_potential_text, value_potential_text)
                    || ', below the top tier as ' || value_tier
        end as high_potential_reason,

        -- owner and account group
        account_manager,
        parent_customer_id,
        account_group_id,
        account_group_tier

    from reasoned

),

typed as (

    -- the customer's type beside its grade (customer_profile), so that BI can cross them
    select
        final.*,
        customer_profile.purchase_rhythm,
        customer_profile.usual_gap_days,
        customer_profile.is_overdue_by_rhythm,
        customer_profile.channel_preference,
        customer_profile.online_revenue_share,
        customer_profile.breadth_trend,
        customer_profile.categories_in_window,
        customer_profile.top_category,
        customer_profile.loyalty_band,
        customer_profile.repeat_purchase_rate,
        customer_profile.tenure_days,
        customer_profile.rhythm_reason || '; ' || customer_profile.channel_reason || '; '
        || customer_profile.category_reason || '; ' || customer_profile.loyalty_reason as profile_reason
    from final
    left join customer_profile
        on final.customer_id = customer_profile.customer_id

)

select * from typed
