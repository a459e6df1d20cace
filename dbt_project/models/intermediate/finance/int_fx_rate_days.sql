-- One row per currency and day, from the currency's first rate date to the day before its
-- newest one, with the rate valid that day (the latest on or before it): the fx rule's day
-- table (macros/fx.sql), read by every model that converts amounts.
--
-- A table of its own, analyzed, so that the planner knows its size. As a CTE of each
-- converting model it was a generate_series per rate period, which the planner takes for
-- 1,000 days each: 1.45 M rows for 1,458 at 100,000 customers, and it merge-joined the 3.6 M
-- order lines against it after sorting both to disk (the first night's
-- int_order_lines_converted: a 25 s SELECT; docs/performance.md).
with

fx_rates as (

    select * from {{ ref('stg_erp__fx_rates') }}

),

fx_rate_days as (

    {{ fx_rate_days('fx_rates') }}

)

select * from fx_rate_days
