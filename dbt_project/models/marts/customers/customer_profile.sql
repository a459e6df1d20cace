{%- set window_days = var('rfm_window_days') | int -%}
{%- set rules = var('profile') -%}
{%- set rhythm = rules.rhythm -%}
{%- set channel = rules.channel -%}
{%- set loyalty = rules.loyalty -%}
{%- set min_change = rules.categories.min_change | int -%}
{#- the configured channel names as the inside of a quoted SQL list: 'offline', 'distributor' -#}
{%- set online_channels = "'" ~ (channel.online_channels | map('replace', "'", "''") | join("', '")) ~ "'" -%}
{%- set offline_channels = "'" ~ (channel.offline_channels | map('replace', "'", "''") | join("', '")) ~ "'" -%}
-- One row per customer and as-of date A: what kind of customer it is, beside how much it is
-- worth (customer_tiers). Four dimensions, each a label and a reason in words, rules in var
-- profile (config/tierflow.yml `profile:`; docs/typing.md):
--   purchase rhythm  from the gaps between the purchase days (days with a completed order)
--                    in the window (A - rfm_window_days, A] and the busiest month's share of
--                    the window's revenue: too_few_orders / concentrated / periodic / irregular;
--   channel          revenue share by order channel in the window: online / offline / mixed;
--   categories       product categories bought in the window against the window before;
--   loyalty          repeat-purchase rate and tenure over every purchase day up to A.
-- Only completed orders dated <= A count. A rerun of a date replaces that date's rows.
with

customers as (

    select * from {{ ref('dim_customers') }}

),

orders as (

    select * from {{ ref('fct_orders') }}

),

order_lines as (

    select * from {{ ref('fct_order_lines') }}

),

products as (

    select * from {{ ref('stg_erp__products') }}

),

population as (

    select customer_id
    from customers
    where created_at <= {{ as_of_date() }}

),

completed_orders as (

    select
        customer_id,
        order_date,
        counted_revenue,
        -- channels are compared lower-case and trimmed, as the config lists them
        case
            when lower(trim(channel)) in ({{ online_channels }}) then 'online'
            when lower(trim(channel)) in ({{ offline_channels }}) then 'offline'
            else 'unknown'
        end as channel_side,
        {{ in_window('order_date', window_days) }} as is_in_window
    from orders
    where status = 'completed'
        and order_date <= {{ as_of_date() }}

),

-- purchase rhythm ---------------------------------------------------------------------

window_purchase_days as (

    select
        customer_id,
        order_date as purchase_date,
        order_date - lag(order_date) over (partition by customer_id order by order_date) as gap_days
    from completed_orders
    where is_in_window
    group by customer_id, order_date

),

gap_stats as (

    select
        customer_id,
        count(*) as purchase_days_in_window,
        avg(gap_days) as mean_gap_days,
        stddev_pop(gap_days) / nullif(avg(gap_days), 0) as gap_cv
    from window_purchase_days
    group by customer_id

),

month_revenue as (

    select
        customer_id,
        cast(date_trunc('month', order_date) as date) as month_start_date,
        sum(counted_revenue) as revenue
    from completed_orders
    where is_in_window
    group by customer_id, date_trunc('month', order_date)

),

busiest_months as (

    -- the month with the most revenue (the earliest on a tie) and its share of the window
    select distinct on (customer_id)
        customer_id,
        month_start_date as busiest_month_start_date,
        revenue / nullif(sum(revenue) over (partition by customer_id), 0) as busiest_month_share
    from month_revenue
    order by customer_id asc, revenue desc, month_start_date asc

),

-- channel -----------------------------------------------------------------------------

channel_revenue as (

    select
        customer_id,
        sum(counted_revenue) as window_revenue,
        sum(counted_revenue) filter (where channel_side = 'online') as online_revenue,
        sum(counted_revenue) filter (where channel_side = 'offline') as offline_revenue,
        sum(counted_revenue) filter (where channel_side = 'unknown') as unknown_revenue
    from completed_orders
    where is_in_window
    group by customer_id

),

-- categories --------------------------------------------------------------------------

category_lines as (

    select
        order_lines.customer_id,
        coalesce(products.category, 'uncategorised') as category,
        order_lines.net_revenue,
        {{ in_window('order_lines.order_date', window_days) }} as is_in_window
    from order_lines
    left join products
        on order_lines.product_id = products.product_id
    where order_lines.status = 'completed'
        and order_lines.order_date > {{ as_of_date() }} - {{ 2 * window_days }}
        and order_lines.order_date <= {{ as_of_date() }}

),

category_revenue as (

    select
        customer_id,
        category,
        sum(net_revenue) filter (where is_in_window) as window_revenue,
        bool_or(is_in_window) as is_bought_in_window,
        bool_or(not is_in_window) as is_bought_before
    from category_lines
    group by customer_id, category

),

category_counts as (

    select
        customer_id,
        count(*) filter (where is_bought_in_window) as categories_in_window,
        count(*) filter (where is_bought_before) as categories_previous_window,
        sum(window_revenue) as window_line_revenue
    from category_revenue
    group by customer_id

),

top_categories as (

    -- the category with the most revenue in the window (alphabetical on a tie)
    select distinct on (customer_id)
        customer_id,
        category as top_category,
        window_revenue as top_category_revenue
    from category_revenue
    where is_bought_in_window
    order by customer_id asc, window_revenue desc, category asc

),

-- loyalty -----------------------------------------------------------------------------

all_purchase_days as (

    select
        customer_id,
        count(distinct order_date) as purchase_days_total,
        min(order_date) as first_purchase_date,
        max(order_date) as last_purchase_date
    from completed_orders
    group by customer_id

),

-- labels ------------------------------------------------------------------------------

measured as (

    select
        population.customer_id,
        coalesce(gap_stats.purchase_days_in_window, 0) as purchase_days_in_window,
        gap_stats.mean_gap_days,
        gap_stats.gap_cv,
        busiest_months.busiest_month_start_date,
        busiest_months.busiest_month_share,
        {{ as_of_date() }} - all_purchase_days.last_purchase_date as days_since_last_purchase,
        coalesce(channel_revenue.window_revenue, 0) as window_revenue,
        coalesce(channel_revenue.online_revenue, 0) as online_revenue,
        coalesce(channel_revenue.offline_revenue, 0) as offline_revenue,
        coalesce(channel_revenue.unknown_revenue, 0) as unknown_revenue,
        coalesce(category_counts.categories_in_window, 0) as categories_in_window,
        coalesce(category_counts.categories_previous_window, 0) as categories_previous_window,
        top_categories.top_category,
        top_categories.top_category_revenue / nullif(category_counts.window_line_revenue, 0)
            as top_category_share_exact,
        coalesce(all_purchase_days.purchase_days_total, 0) as purchase_days_total,
        all_purchase_days.first_purchase_date,
        {{ as_of_date() }} - all_purchase_days.first_purchase_date as tenure_days
    from population
    left join gap_stats
        on population.customer_id = gap_stats.customer_id
    left join busiest_months
        on population.customer_id = busiest_months.customer_id
    left join channel_revenue
        on population.customer_id = channel_revenue.customer_id
    left join category_counts
        on population.customer_id = category_counts.customer_id
    left join top_categories
        on population.customer_id = top_categories.customer_id
    left join all_purchase_days
        on population.customer_id = all_purchase_days.customer_id

),

labelled as (

    select
        *,
        case
            when purchase_days_in_window < {{ rhythm.min_purchase_days | int }} then 'too_few_orders'
            when busiest_month_share >= {{ sql_number(rhythm.concentrated_min_month_share) }}
                then 'concentrated'
            when gap_cv <= {{ sql_number(rhythm.periodic_max_cv) }} then 'periodic'
            else 'irregular'
        end as purchase_rhythm,
        case
            when window_revenue <= 0 then 'no_orders'
            when online_revenue + offline_revenue <= 0 then 'unknown'
            when online_revenue / (online_revenue + offline_revenue)
                >= {{ sql_number(channel.dominant_share) }} then 'online'
            when offline_revenue / (online_revenue + offline_revenue)
                >= {{ sql_number(channel.dominant_share) }} then 'offline'
            else 'mixed'
        end as channel_preference,
        case
            when categories_in_window = 0 then 'no_orders'
            when categories_previous_window = 0 then 'new'
            when categories_in_window >= categories_previous_window + {{ min_change }} then 'rising'
            when categories_in_window <= categories_previous_window - {{ min_change }} then 'narrowing'
            else 'stable'
        end as breadth_trend,
        cast(purchase_days_total - 1 as numeric) / nullif(purchase_days_total, 0) as repeat_rate_exact
    from measured

),

banded as (

    select
        *,
        purchase_rhythm = 'periodic'
        and days_since_last_purchase > {{ sql_number(rhythm.overdue_factor) }} * mean_gap_days
            as is_overdue_by_rhythm,
        case
            when purchase_days_total = 0 then 'never_purchased'
            when purchase_days_total = 1 then 'one_time'
            when repeat_rate_exact >= {{ sql_number(loyalty.loyal_min_repeat_rate) }}
                and tenure_days >= {{ loyalty.loyal_min_tenure_days | int }} then 'loyal'
            else 'repeat'
        end as loyalty_band
    from labelled

),

reasoned as (

    select
        *,
        -- why the rhythm
        purchase_rhythm || ': '
        || case
            when purchase_rhythm = 'too_few_orders'
                then purchase_days_in_window
                    || case when purchase_days_in_window = 1 then ' purchase day' else ' purchase days' end
                    || ' in the last {{ window_days }} days (a rhythm needs '
                    || {{ rhythm.min_purchase_days | int }} || ')'
            when purchase_rhythm = 'concentrated'
                then {{ format_share('busiest_month_share') }} || ' of the revenue of the last '
                    || '{{ window_days }} days fell in ' || to_char(busiest_month_start_date, 'YYYY-MM')
                    || ' (concentrated from ' || {{ format_share(sql_number(rhythm.concentrated_min_month_share)) }}
                    || '), ' || purchase_days_in_window || ' purchase days'
            else purchase_days_in_window || ' purchase days in the last {{ window_days }} days, usual gap '
                || trim_scale(round(mean_gap_days, 1)) || ' days, gaps vary by '
                || {{ format_share('gap_cv') }} || ' (periodic up to '
                || {{ format_share(sql_number(rhythm.periodic_max_cv)) }} || ')'
                || case
                    when is_overdue_by_rhythm
                        then '; overdue: ' || days_since_last_purchase
                            || ' days since the last purchase, more than '
                            || trim_scale({{ sql_number(rhythm.overdue_factor) }}) || ' x the usual gap'
                    else ''
                end
        end as rhythm_reason,
        -- why the channel
        channel_preference || ': '
        || case
            when channel_preference = 'no_orders'
                then 'no revenue in the last {{ window_days }} days'
            when channel_preference = 'unknown'
                then 'no order of the last {{ window_days }} days names a configured channel'
            else 'online ' || {{ format_share('online_revenue / window_revenue') }}
                || ', offline ' || {{ format_share('offline_revenue / window_revenue') }}
                || case
                    when unknown_revenue > 0
                        then ', unknown channel ' || {{ format_share('unknown_revenue / window_revenue') }}
                    else ''
                end
                || ' of the revenue of the last {{ window_days }} days ('
                || case
                    when channel_preference = 'mixed' then 'neither side reaches '
                    else 'one side from '
                end
                || {{ format_share(sql_number(channel.dominant_share)) }} || ' of the known channels)'
        end as channel_reason,
        -- why the breadth
        breadth_trend || ': '
        || case
            when breadth_trend = 'no_orders'
                then 'no completed order line in the last {{ window_days }} days'
            else categories_in_window
                || case when categories_in_window = 1 then ' category' else ' categories' end
                || ' in the last {{ window_days }} days (top ' || top_category || ' '
                || {{ format_share('top_category_share_exact') }} || ' of the revenue), '
                || categories_previous_window || ' in the {{ window_days }} days before'
        end as category_reason,
        -- why the loyalty
        loyalty_band || ': '
        || case
            when loyalty_band = 'never_purchased' then 'no completed order up to ' || {{ as_of_date() }}
            else purchase_days_total
                || case when purchase_days_total = 1 then ' purchase day' else ' purchase days' end
                || ' since ' || first_purchase_date || ' (' || tenure_days
                || case when tenure_days = 1 then ' day' else ' days' end || '), repeat-purchase rate '
                || {{ format_share('repeat_rate_exact') }} || ' (loyal from '
                || {{ format_share(sql_number(loyalty.loyal_min_repeat_rate)) }} || ' and '
                || {{ loyalty.loyal_min_tenure_days | int }} || ' days)'
        end as loyalty_reason
    from banded

),

final as (

    select
        -- ids
        customer_id,

        -- dates
        {{ as_of_date() }} as as_of_date,

        -- purchase rhythm
        purchase_rhythm,
        purchase_days_in_window,
        round(mean_gap_days, 1) as usual_gap_days,
        round(gap_cv, 4) as gap_cv,
        busiest_month_start_date,
        round(busiest_month_share, 4) as busiest_month_revenue_share,
        days_since_last_purchase,
        coalesce(is_overdue_by_rhythm, false) as is_overdue_by_rhythm,
        rhythm_reason,

        -- channel preference (shares of the window's revenue; money in the base currency)
        channel_preference,
        window_revenue,
        round(online_revenue / nullif(window_revenue, 0), 4) as online_revenue_share,
        round(offline_revenue / nullif(window_revenue, 0), 4) as offline_revenue_share,
        round(unknown_revenue / nullif(window_revenue, 0), 4) as unknown_channel_revenue_share,
        channel_reason,

        -- category breadth
        breadth_trend,
        breadth_trend = 'rising' as is_breadth_rising,
        categories_in_window,
        categories_previous_window,
        top_category,
        round(top_category_share_exact, 4) as top_category_share,
        category_reason,

        -- loyalty
        loyalty_band,
        purchase_days_total,
        round(repeat_rate_exact, 4) as repeat_purchase_rate,
        first_purchase_date,
        tenure_days,
        loyalty_reason

    from reasoned

)

select * from final
