-- One row per order line: the latest delivered version of each (order_id, line_number).
{{ staging_config(['order_id', 'line_number'], not_null_columns=['product_id']) }}

with

source as (

    {{ delivered_versions_to_stage(source('erp', 'order_lines'), ['order_id', 'line_number']) }}

),

deduplicated as (

    {{ latest_delivered_version('source', ['order_id', 'line_number']) }}

),

renamed as (

    select
        -- ids
        order_id,
        line_number,
        product_id,

        -- quantities
        quantity,

        -- money (in the order's currency)
        unit_price,
        discount_amount,
        unit_cost,

        -- dates
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
