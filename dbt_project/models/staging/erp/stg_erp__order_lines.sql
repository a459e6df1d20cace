-- One row per order line: the latest delivered version of each (order_id, line_number).
with

source as (

    select * from {{ source('erp', 'order_lines') }}
    -- as known on the as-of date: later deliveries are not visible to this run
    where {{ delivered_by_as_of_date() }}

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
