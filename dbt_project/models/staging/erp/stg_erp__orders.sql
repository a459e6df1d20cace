-- One row per order: the latest delivered version of each order_id.
with

source as (

    select * from {{ source('erp', 'orders') }}
    -- as known on the as-of date: later deliveries are not visible to this run
    where {{ delivered_by_as_of_date() }}

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
