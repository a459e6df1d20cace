-- One row per product: the latest delivered version of each product_id.
with

source as (

    select * from {{ source('erp', 'products') }}
    -- as known on the as-of date: later deliveries are not visible to this run
    where {{ delivered_by_as_of_date() }}

),

deduplicated as (

    {{ latest_delivered_version('source', ['product_id']) }}

),

renamed as (

    select
        -- ids
        product_id,

        -- attributes
        product_name,
        category,
        -- the loader does not normalise this optional column (it does for orders)
        upper(currency) as currency,

        -- money (in the product's currency)
        list_price,
        standard_cost,

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
