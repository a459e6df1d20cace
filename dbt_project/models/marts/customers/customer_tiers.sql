{%- set margin = sql_number(var('tier_hysteresis_margin')) -%}
{%- set potential = var('tier_potential') -%}
{%- set trend_days = var('lifecycle').trend_days | int -%}
-- One row per customer and as-of date A: the value tier BI reads, and why.
--
-- The value score, the tier it gives by score alone and the three one-dimension tiers come
-- from int_customers_scored; the computed tier (the score tier stabilised by hysteresis
-- against the customer's previous computed tier) from int_customers_stabilised. Here a
-- manual override valid on A replaces the computed tier (value_tier), and the mart adds the
-- stage, credit band, high potential, account group, the reasons in plain words, the change
-- against the customer's previous value tier, and the customer's type (customer_profile).
with

customers_scored as (

    select * from {{ ref('int_customers_scored') }}

),

customers_stabilised as (

    select * from {{ ref('int_customers_stabilised') }}

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
        {{ rank_position('revenue_growth_rate desc nulls last') }} as growth_position
    from customer_lifecycle

),

joined as (

    select
        customers_scored.*,
        customers_stabilised.previous_value_tier,
        customers_stabilised.previous_computed_tier,
        customers_stabilised.computed_tier,
        customers_stabilised.is_hysteresis_held,
        customers_stabilised.hysteresis_cutoff,
        customers_stabilised.hysteresis_cutoff_tier,
        customers_stabilised.top_tier_cutoff,
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
        coalesce(customers.parent_customer_id, group_heads.account_group_id) as account_group_id,
        -- the customer's type beside its grade, so that BI can cross them
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
    from customers_scored
    left join customers_stabilised
        on customers_scored.customer_id = customers_stabilised.customer_id
    left join active_overrides
        on customers_scored.customer_id = active_overrides.customer_id
    left join growth_ranked
        on customers_scored.customer_id = growth_ranked.customer_id
    left join customer_credit_risk
        on customers_scored.customer_id = customer_credit_risk.customer_id
    left join customers
        on customers_scored.customer_id = customers.customer_id
    left join account_group_tiers as group_heads
        on customers_scored.customer_id = group_heads.account_group_id
    left join customer_profile
        on customers_scored.customer_id = customer_profile.customer_id

),

overridden as (

    -- the value tier: a configured override valid on A, else the computed tier
    select
        joined.*,
        case when joined.is_override then joined.override_tier else joined.computed_tier end as value_tier,
        account_group_tiers.value_tier as account_group_tier
    from joined
    left join account_group_tiers
        on joined.account_group_id = account_group_tiers.account_group_id

),

potential_flagged as (

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
        {%- endif %} as is_value_potential
    from overridden

),

score_explained as (

    select
        *,
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
    from potential_flagged

),

reasoned as (

    select
        *,
        -- why the computed tier: held by hysteresis, or the score's reason
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
    from score_explained

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
        account_group_tier,

        -- type (customer_profile)
        purchase_rhythm,
        usual_gap_days,
        is_overdue_by_rhythm,
        channel_preference,
        online_revenue_share,
        breadth_trend,
        categories_in_window,
        top_category,
        loyalty_band,
        repeat_purchase_rate,
        tenure_days,
        profile_reason

    from reasoned

)

select * from final
