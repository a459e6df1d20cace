-- One row per invoice: the latest delivered version of each invoice_id.
{{ staging_config(['invoice_id'], not_null_columns=['customer_id', 'currency', 'amount', 'invoice_date', 'due_date']) }}

with

source as (

    {{ delivered_versions_to_stage(source('erp', 'invoices'), ['invoice_id']) }}

),

deduplicated as (

    {{ latest_delivered_version('source', ['invoice_id']) }}

),

renamed as (

    select
        -- ids
        invoice_id,
        customer_id,
        order_id,

        -- attributes
        status,
        currency,

        -- money (in the invoice's currency)
        amount,
        paid_amount,

        -- dates
        invoice_date,
        due_date,
        paid_date,
        updated_at,

        -- load metadata
        _load_id as load_id,
        _business_date as business_date

    from deduplicated

),

final as (

    select * from renamed

)

select * from final
