{%- set window_days = var('credit_risk').window_days | int -%}
-- One row per customer and as-of date A: receivables at A (open and overdue amounts), the
-- payment behaviour in the credit window (A - credit_risk.window_days, A] (average days
-- late, write-offs), days sales outstanding, and the credit risk band from var
-- credit_risk: unknown without any invoice dated on or before A, else high / medium when
-- any threshold of the band is reached, else low. A rerun of a date replaces its rows.
with

customers as (

    select * from {{ ref('dim_customers') }}

),

invoices as (

    select * from {{ ref('int_invoices_converted') }}
    where invoice_date <= {{ as_of_date() }}

),

population as (

    select customer_id
    from customers
    where created_at <= {{ as_of_date() }}

),

invoice_states as (

    -- each invoice as it stood at A: paid when its payment is dated on or before A (or it
    -- is marked paid without a date), written off when so marked, else still open
    select
        customer_id,
        invoice_date,
        due_date,
        amount,
        status = 'written_off' as is_written_off,
        cast(updated_at as date) as status_date,
        case
            when status = 'written_off' then false
            when paid_date is not null then paid_date > {{ as_of_date() }}
            else coalesce(status, 'open') <> 'paid'
        end as is_open,
        -- days after the due date it was paid, or is still unpaid at A
        case
            when status = 'written_off' then null
            when paid_date is not null and paid_date <= {{ as_of_date() }}
                then greatest(paid_date - due_date, 0)
            when paid_date is null and status = 'paid' then null
            when due_date < {{ as_of_date() }} then {{ as_of_date() }} - due_date
            else 0
        end as days_late,
        -- unpaid part; a later payment (after A) did not exist yet at A
        case
            when paid_date is not null and paid_date > {{ as_of_date() }} then amount
            else greatest(amount - paid_amount, 0)
        end as unpaid_amount
    from invoices

),

customer_totals as (

    select
        customer_id,
        count(*) as invoices,
        sum(unpaid_amount) filter (where is_open) as open_amount,
        sum(unpaid_amount) filter (where is_open and due_date < {{ as_of_date() }})
            as overdue_amount,
        -- payment behaviour of the invoices due in the window (written-off ones excluded:
        -- they are counted as write-offs)
        avg(days_late) filter (
            where {{ in_window('due_date', window_days) }} and days_late is not null
        ) as avg_days_late,
        count(*) filter (
            where is_written_off and {{ in_window('status_date', window_days) }}
        ) as write_off_count,
        sum(unpaid_amount) filter (
            where is_written_off and {{ in_window('status_date', window_days) }}
        ) as write_off_amount,
        sum(amount) filter (where {{ in_window('invoice_date', window_days) }})
            as invoiced_amount
    from invoice_states
    group by customer_id

),

metrics as (

    select
        population.customer_id,
        coalesce(customer_totals.invoices, 0) as invoices,
        round(coalesce(customer_totals.invoiced_amount, 0), 2) as invoiced_amount,
        round(coalesce(customer_totals.open_amount, 0), 2) as open_amount,
        round(coalesce(customer_totals.overdue_amount, 0), 2) as overdue_amount,
        round(
            coalesce(customer_totals.overdue_amount, 0)
            / nullif(customer_totals.open_amount, 0),
            4
        ) as overdue_share,
        round(customer_totals.avg_days_late, 1) as avg_days_late,
        coalesce(customer_totals.write_off_count, 0) as write_off_count,
        round(coalesce(customer_totals.write_off_amount, 0), 2) as write_off_amount,
        -- days sales outstanding: receivables at A over the window's invoiced amount,
        -- scaled to the window's length
        round(
            coalesce(customer_totals.open_amount, 0)
            / nullif(customer_totals.invoiced_amount, 0) * {{ window_days }},
            1
        ) as days_sales_outstanding
    from population
    left join customer_totals
        on population.customer_id = customer_totals.customer_id

),

final as (

    select
        -- ids
        customer_id,

        -- dates
        {{ as_of_date() }} as as_of_date,

        -- receivables at A (base currency)
        invoices,
        open_amount,
        overdue_amount,
        overdue_share,

        -- payment behaviour in the window
        invoiced_amount,
        avg_days_late,
        write_off_count,
        write_off_amount,
        days_sales_outstanding,

        -- band
        case
            when invoices = 0 then 'unknown'
            when {{ credit_band_reached('high', 'overdue_share', 'avg_days_late', 'write_off_count') }}
                then 'high'
            when {{ credit_band_reached('medium', 'overdue_share', 'avg_days_late', 'write_off_count') }}
                then 'medium'
            else 'low'
        end as credit_risk_band

    from metrics

)

select * from final
