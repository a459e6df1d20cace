-- Invoices with their amounts converted to the base currency, by the fx rule of
-- macros/fx.sql on the invoice date (a payment is converted at the invoice's rate, so an
-- invoice paid in full shows no fx difference). This is the one place where invoice
-- amounts are converted. Amounts are unrounded.
--
-- Incremental like the order facts (macros/incremental.sql): a night converts the invoices
-- new to the table (a newer load or a later date folder) and those whose row here came
-- from a date folder after A (a rerun of an earlier date); a new fx rate does not touch
-- already converted invoices.
{{ as_known_incremental_config(
    key_columns=['invoice_id'],
    not_null_columns=['customer_id', 'fx_rate', 'amount', 'paid_amount', 'source_load_id', 'source_business_date'],
) }}

with

all_invoices as (

    select * from {{ ref('stg_erp__invoices') }}

),

invoices as (

    select all_invoices.*
    from all_invoices
    {% if is_incremental() %}
    where {{ is_new_to_build('all_invoices') }}
        or all_invoices.invoice_id in ({{ built_after_as_of_date('invoice_id') }})
    {% endif %}

),

fx_rates as (

    select * from {{ ref('stg_erp__fx_rates') }}

),

fx_rate_days as (

    select * from {{ ref('int_fx_rate_days') }}

),

fx_rate_latest as (

    {{ fx_rate_latest('fx_rates') }}

),

invoices_with_rates as (

    select
        invoices.*,
        {{ fx_rate_or_one('invoices.currency', fx_rate_on_date('invoice_fx')) }} as fx_rate
    from invoices
    {{ fx_rate_join('invoice_fx', 'invoices.currency', 'invoices.invoice_date') }}

),

final as (

    select
        -- ids
        invoice_id,
        customer_id,
        order_id,

        -- dates
        invoice_date,
        due_date,
        paid_date,
        updated_at,

        -- attributes
        status,
        currency,
        fx_rate,

        -- money in the invoice's currency, as delivered
        amount as amount_in_currency,
        paid_amount as paid_amount_in_currency,

        -- money in the base currency (unrounded)
        amount * fx_rate as amount,
        coalesce(paid_amount, 0) * fx_rate as paid_amount,

        -- load metadata
        load_id as source_load_id,
        business_date as source_business_date

    from invoices_with_rates

)

select * from final
