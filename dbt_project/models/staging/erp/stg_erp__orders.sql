-- One row per order: the latest delivered version of each order_id.
with

source as (

    select * from {{ source('erp', 'orders') }}
    -- as known on the as-of date: later deliveries are not visible to this run
    where {{ delivered_by_as_of_date() }}

),

deduplicated as (

    select
        *,
        row_number() over (
            partition by order_id
            order by updated_at desc, _load_id desc, _line_number desc
        ) as version_rank
    from source

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
    where version_rank = 1

),

final as (

    select * from renamed

)

select * from final
