{%- set alerts = var('alerts') -%}
{%- set churn = alerts.churn_risk -%}
{%- set drop = alerts.revenue_drop -%}
{%- set credit_high = var('credit_risk').high -%}
{%- set trend_days = var('lifecycle').trend_days | int -%}
{%- set top_tier = var('tier_levels')[0].name -%}
{#- the alerted tiers as the inside of a quoted SQL list: high', 'medium -#}
{%- set alert_tiers = alerts.tiers | map('string') | map('replace', "'", "''") | join("', '") -%}
-- One row per alert on as-of date A, for the account manager who must act (owner;
-- 'unassigned' without one). Customers of the tiers in var alerts.tiers get:
--   churn_risk   recency_days > alerts.churn_risk.gap_factor x their own average gap
--                between purchase days (BTYD: recency_btyd_days / frequency_repeat, at
--                least min_repeat_purchases repeat days), and > min_recency_days;
--   revenue_drop revenue of the last lifecycle.trend_days down by alerts.revenue_drop.min_drop
--                or more against the trend_days before;
--   credit       credit_risk_band high (metric: the first high threshold reached).
-- Every customer whose value tier fell from the top tier gets tier_downgrade. Severity:
-- critical for top-tier customers and top-tier downgrades, else warning. alert_id =
-- 'A:alert_type:customer_id' is stable across reruns. A rerun of a date replaces its rows.
with

customer_tiers as (

    select * from {{ ref('customer_tiers') }}
    where as_of_date = {{ as_of_date() }}

),

customer_rfm as (

    select * from {{ ref('customer_rfm') }}
    where as_of_date = {{ as_of_date() }}

),

customer_lifecycle as (

    select * from {{ ref('customer_lifecycle') }}
    where as_of_date = {{ as_of_date() }}

),

customer_credit_risk as (

    select * from {{ ref('customer_credit_risk') }}
    where as_of_date = {{ as_of_date() }}

),

customers as (

    select * from {{ ref('dim_customers') }}

),

customer_health as (

    select * from {{ ref('customer_health') }}
    where as_of_date = {{ as_of_date() }}

),

watched as (

    -- customers of the alerted tiers, with what the alerts read
    select
        customer_tiers.customer_id,
        customer_tiers.value_tier,
        customer_rfm.recency_days,
        customer_rfm.last_order_date,
        customer_rfm.frequency_repeat,
        round(
            cast(customer_rfm.recency_btyd_days as numeric)
            / nullif(customer_rfm.frequency_repeat, 0),
            1
        ) as usual_gap_days,
        customer_lifecycle.recent_revenue,
        customer_lifecycle.prior_revenue,
        customer_lifecycle.revenue_growth_rate,
        customer_credit_risk.credit_risk_band,
        customer_credit_risk.overdue_share,
        customer_credit_risk.avg_days_late,
        customer_credit_risk.write_off_count
    from customer_tiers
    left join customer_rfm
        on customer_tiers.customer_id = customer_rfm.customer_id
    left join customer_lifecycle
        on customer_tiers.customer_id = customer_lifecycle.customer_id
    left join customer_credit_risk
        on customer_tiers.customer_id = customer_credit_risk.customer_id
    where customer_tiers.value_tier in ('{{ alert_tiers }}')

),

churn_risk as (

    select
        customer_id,
        'churn_risk' as alert_type,
        cast(recency_days as numeric) as metric_value,
        greatest(
            round({{ sql_number(churn.gap_factor) }} * usual_gap_days, 1),
            {{ churn.min_recency_days | int }}
        ) as threshold,
        'no order for ' || recency_days || ' days (last ' || last_order_date || '), '
        || trim_scale(round(recency_days / usual_gap_days, 1)) || ' x the usual '
        || trim_scale(usual_gap_days) || ' days between orders; alert above '
        || trim_scale(greatest(
            round({{ sql_number(churn.gap_factor) }} * usual_gap_days, 1),
            {{ churn.min_recency_days | int }}
        )) || ' days (' || trim_scale({{ sql_number(churn.gap_factor) }})
        || ' x the usual gap, at least ' || {{ churn.min_recency_days | int }} || ')' as reason
    from watched
    where frequency_repeat >= {{ churn.min_repeat_purchases | int }}
        and usual_gap_days > 0
        and recency_days > {{ sql_number(churn.gap_factor) }} * usual_gap_days
        and recency_days > {{ churn.min_recency_days | int }}

),

revenue_drop as (

    select
        customer_id,
        'revenue_drop' as alert_type,
        revenue_growth_rate as metric_value,
        -{{ sql_number(drop.min_drop) }} as threshold,
        'revenue of the last ' || {{ trend_days }} || ' days '
        || {{ format_amount('recent_revenue') }} || ' ' || {{ base_currency() }} || ' against '
        || {{ format_amount('prior_revenue') }} || ' the ' || {{ trend_days }} || ' days before ('
        || {{ format_share('revenue_growth_rate') }} || '; alert at -'
        || {{ format_share(sql_number(drop.min_drop)) }} || ' or worse)' as reason
    from watched
    where prior_revenue > 0
        and revenue_growth_rate <= -{{ sql_number(drop.min_drop) }}

),

credit as (

    -- metric: the first threshold of the high band that is reached
    select
        customer_id,
        'credit' as alert_type,
        case
            {%- if credit_high.overdue_share is not none %}
            when overdue_share >= {{ sql_number(credit_high.overdue_share) }} then overdue_share
            {%- endif %}
            {%- if credit_high.avg_days_late is not none %}
            when avg_days_late >= {{ sql_number(credit_high.avg_days_late) }} then avg_days_late
            {%- endif %}
            {%- if credit_high.write_off_count is not none %}
            when write_off_count >= {{ sql_number(credit_high.write_off_count) }}
                then cast(write_off_count as numeric)
            {%- endif %}
        end as metric_value,
        case
            {%- if credit_high.overdue_share is not none %}
            when overdue_share >= {{ sql_number(credit_high.overdue_share) }}
                then {{ sql_number(credit_high.overdue_share) }}
            {%- endif %}
            {%- if credit_high.avg_days_late is not none %}
            when avg_days_late >= {{ sql_number(credit_high.avg_days_late) }}
                then {{ sql_number(credit_high.avg_days_late) }}
            {%- endif %}
            {%- if credit_high.write_off_count is not none %}
            when write_off_count >= {{ sql_number(credit_high.write_off_count) }}
                then {{ sql_number(credit_high.write_off_count) }}
            {%- endif %}
        end as threshold,
        'credit risk high: overdue share '
        || coalesce({{ format_share('overdue_share') }}, 'n/a (nothing open)')
        || ', average days late ' || coalesce(cast(trim_scale(avg_days_late) as text), 'n/a')
        || ', write-offs ' || write_off_count || ' in the credit window' as reason
    from watched
    where credit_risk_band = 'high'

),

tier_downgrade as (

    select
        customer_id,
        'tier_downgrade' as alert_type,
        value_score as metric_value,
        top_tier_cutoff as threshold,
        'value tier fell from ' || previous_value_tier || ' to ' || value_tier
        || ' (value score ' || to_char(value_score, 'FM0.0000') || ', '
        || {{ sql_literal(top_tier) }} || ' cutoff '
        || coalesce(to_char(top_tier_cutoff, 'FM0.0000'), 'n/a') || '); ' || tier_reason as reason
    from customer_tiers
    where previous_value_tier = {{ sql_literal(top_tier) }}
        and tier_change = 'down'

),

all_alerts as (

    select * from churn_risk
    union all
    select * from revenue_drop
    union all
    select * from credit
    union all
    select * from tier_downgrade

),

final as (

    select
        -- dates
        {{ as_of_date() }} as as_of_date,

        -- ids
        to_char({{ as_of_date() }}, 'YYYY-MM-DD') || ':' || all_alerts.alert_type || ':'
        || all_alerts.customer_id as alert_id,
        all_alerts.customer_id,

        -- who and what
        customers.customer_name,
        customer_tiers.value_tier,
        all_alerts.alert_type,
        case
            when all_alerts.alert_type = 'tier_downgrade'
                or customer_tiers.value_tier = {{ sql_literal(top_tier) }}
                then 'critical'
            else 'warning'
        end as severity,
        -- owner: the column name the alert e-mails read
        coalesce(nullif(trim(customers.account_manager), ''), 'unassigned') as owner,  -- noqa: RF04
        -- closing the loop: a revenue drop names its revenue_bridge row, a top-tier churn risk
        -- the health components behind it (customer_health)
        all_alerts.reason
        || case
            when all_alerts.alert_type = 'revenue_drop'
                then '; revenue_bridge ' || to_char({{ as_of_date() }}, 'YYYY-MM') || ' '
                    || customer_tiers.value_tier || ' / ' || coalesce(customers.region, 'unknown')
                    || ' / ' || coalesce(customers.channel, 'unknown')
            when all_alerts.alert_type = 'churn_risk'
                and customer_tiers.value_tier = {{ sql_literal(top_tier) }}
                and customer_health.customer_id is not null
                then '; health ' || trim_scale(customer_health.health_score) || ' ('
                    || customer_health.health_band || ', weakest: ' || customer_health.weakest_component
                    || '): ' || customer_health.health_reason
            else ''
        end as reason,

        -- the numbers behind it
        all_alerts.metric_value,
        all_alerts.threshold

    from all_alerts
    inner join customer_tiers
        on all_alerts.customer_id = customer_tiers.customer_id
    left join customers
        on all_alerts.customer_id = customers.customer_id
    left join customer_health
        on all_alerts.customer_id = customer_health.customer_id

)

select * from final
