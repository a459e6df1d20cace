-- One row per order: the latest delivered version of each order_id.
{{ staging_config(['order_id'], not_null_columns=['customer_id', 'status', 'currency', 'order_date']) }}

with

source as (

    {{ delivered_versions_to_stage(source('erp', 'orders'), ['order_id']) }}

),

deduplicated as (

    {{ latest_delivered_version('source', ['order_id']) }}

),

renamed as (

    select
        -- ids
        order_id,
        customer_id,

        -- attributes
        status,
        currency,
        channel,
        sales_rep,

        -- money (in the order's currency)
        shipping_cost,

        -- dates
        order_date,
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
