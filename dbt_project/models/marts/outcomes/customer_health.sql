{%- set h = var('health') -%}
{%- set days = h.window_days | int -%}
{%- set w_total = h.weights.support + h.weights.payment + h.weights.engagement -%}
{#- points of each component in a 0..100 score -#}
{%- set p_support = (100 * h.weights.support / w_total) | round(6) -%}
{%- set p_payment = (100 * h.weights.payment / w_total) | round(6) -%}
{%- set p_engagement = (100 * h.weights.engagement / w_total) | round(6) -%}
-- One row per tiered customer and as-of date A: a health score 0..100 and its band, from
-- three components (outcomes.health in config/tierflow.yml):
--   support     service tickets opened in the last window_days, age of the oldest open one,
--               mean days to resolve the ones closed in the window;
--   payment     overdue share and average days late (customer_credit_risk);
--   engagement  days since the last order against the customer's own usual gap between
--               purchase days (customer_rfm), and sales activities in the window.
-- Each metric's part is 1 at 0 and falls linearly to 0 at its *_bad_at value (the order gap:
-- 1 up to the usual gap, 0 at gap_ratio_bad_at x it; activities: count / activities_good_at,
-- at most 1); a metric without data (no tickets, no invoices, no usual gap) counts as 1. A
-- component is the mean of its parts; its points = its part of 100 by weight x the
-- component; score = the sum of the points; band = the first band whose min_score the score
-- reaches. health_reason lists every component with its points and the numbers behind them.
with

customer_tiers as (

    select * from {{ ref('customer_tiers') }}
    where as_of_date = {{ as_of_date() }}

),

customer_rfm as (

    select * from {{ ref('customer_rfm') }}
    where as_of_date = {{ as_of_date() }}

),

customer_credit_risk as (

    select * from {{ ref('customer_credit_risk') }}
    where as_of_date = {{ as_of_date() }}

),

tickets as (

    select * from {{ ref('stg_service__tickets') }}
    where cast(opened_at as date) <= {{ as_of_date() }}

),

activities as (

    select * from {{ ref('stg_crm__activities') }}

),

ticket_totals as (

    select
        customer_id,
        count(*) filter (where {{ in_window('cast(opened_at as date)', days) }}) as tickets,
        max({{ as_of_date() }} - cast(opened_at as date)) filter (
            where closed_at is null or cast(closed_at as date) > {{ as_of_date() }}
        ) as oldest_open_ticket_days,
        round(avg(extract(epoch from closed_at - opened_at) / 86400) filter (
            where cast(closed_at as date) <= {{ as_of_date() }}
            and {{ in_window('cast(closed_at as date)', days) }}
        ), 1) as avg_resolution_days
    from tickets
    group by customer_id

),

activity_totals as (

    select
        customer_id,
        count(*) as activities
    from activities
    where {{ in_window('activity_date', days) }}
    group by customer_id

),

metrics as (

    select
        customer_tiers.customer_id,
        customer_tiers.value_tier,
        coalesce(ticket_totals.tickets, 0) as tickets,
        ticket_totals.oldest_open_ticket_days,
        ticket_totals.avg_resolution_days,
        customer_credit_risk.overdue_share,
        customer_credit_risk.avg_days_late,
        customer_rfm.recency_days,
        round(
            cast(customer_rfm.recency_btyd_days as numeric) / nullif(customer_rfm.frequency_repeat, 0), 1
        ) as usual_gap_days,
        coalesce(activity_totals.activities, 0) as activities
    from customer_tiers
    left join ticket_totals
        on customer_tiers.customer_id = ticket_totals.customer_id
    left join activity_totals
        on customer_tiers.customer_id = activity_totals.customer_id
    left join customer_credit_risk
        on customer_tiers.customer_id = customer_credit_risk.customer_id
    left join customer_rfm
        on customer_tiers.customer_id = customer_rfm.customer_id

),

parts as (

    select
        *,
        round(recency_days / nullif(usual_gap_days, 0), 2) as order_gap_ratio,
        {{ health_part('tickets', h.tickets_bad_at) }} as tickets_part,
        {{ health_part('oldest_open_ticket_days', h.open_ticket_age_bad_at) }} as open_ticket_part,
        {{ health_part('avg_resolution_days', h.resolution_days_bad_at) }} as resolution_part,
        {{ health_part('overdue_share', h.overdue_share_bad_at) }} as overdue_part,
        {{ health_part('avg_days_late', h.days_late_bad_at) }} as days_late_part,
        case
            when recency_days is null or coalesce(usual_gap_days, 0) = 0 then 1
            else greatest(0, least(
                    1,
                    1 - (recency_days / usual_gap_days - 1) / ({{ sql_number(h.gap_ratio_bad_at) }} - 1)
                ))
        end as order_gap_part,
        least(1, activities / {{ sql_number(h.activities_good_at) }}) as activity_part
    from metrics

),

components as (

    select
        *,
        round({{ p_support }} * (tickets_part + open_ticket_part + resolution_part) / 3, 1) as support_points,
        round({{ p_payment }} * (overdue_part + days_late_part) / 2, 1) as payment_points,
        round({{ p_engagement }} * (order_gap_part + activity_part) / 2, 1) as engagement_points
    from parts

),

scored as (

    select
        *,
        support_points + payment_points + engagement_points as health_score,
        -- the component that lost the most points (ties: engagement, payment, support)
        case greatest(
            {{ p_engagement }} - engagement_points,
            {{ p_payment }} - payment_points,
            {{ p_support }} - support_points
        )
            when {{ p_engagement }} - engagement_points then 'engagement'
            when {{ p_payment }} - payment_points then 'payment'
            else 'support'
        end as weakest_component
    from components

),

final as (

    select
        -- ids
        customer_id,

        -- dates
        {{ as_of_date() }} as as_of_date,

        -- score
        value_tier,
        health_score,
        case
            {%- for band in h.bands %}
            when health_score >= {{ sql_number(band.min_score) }} then {{ sql_literal(band.name) }}
            {%- endfor %}
        end as health_band,
        weakest_component,

        -- components (points of 100)
        support_points,
        payment_points,
        engagement_points,

        -- the numbers behind them
        tickets,
        oldest_open_ticket_days,
        avg_resolution_days,
        overdue_share,
        avg_days_late,
        recency_days,
        usual_gap_days,
        order_gap_ratio,
        activities,

        'support ' || trim_scale(support_points) || ' of ' || trim_scale(round({{ p_support }}, 1))
        || ' (' || tickets || ' tickets in ' || {{ days }} || ' days'
        || coalesce(', oldest open ' || oldest_open_ticket_days || ' days', '')
        || coalesce(', resolved in ' || trim_scale(avg_resolution_days) || ' days on average', '')
        || '); payment ' || trim_scale(payment_points) || ' of ' || trim_scale(round({{ p_payment }}, 1))
        || ' (' || coalesce('overdue share ' || {{ format_share('overdue_share') }}, 'no open invoices')
        || coalesce(', ' || trim_scale(avg_days_late) || ' days late on average', '')
        || '); engagement ' || trim_scale(engagement_points) || ' of ' || trim_scale(round({{ p_engagement }}, 1))
        || ' (' || coalesce(
            'no order for ' || recency_days || ' days, ' || trim_scale(order_gap_ratio) || ' x the usual '
            || trim_scale(usual_gap_days) || ' days',
            'no usual order gap yet'
        )
        || ', ' || activities || ' activities in ' || {{ days }} || ' days)' as health_reason

    from scored

)

select * from final
