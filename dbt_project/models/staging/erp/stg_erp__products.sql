-- One row per product: the latest delivered version of each product_id.
with

source as (

    select * from {{ source('erp', 'products') }}
    -- as known on the as-of date: later deliveries are not visible to this run
    where {{ delivered_by_as_of_date() }}

),

deduplicated as (

    select
        *,
        row_number() over (
            partition by product_id
            order by updated_at desc, _load_id desc, _line_number desc
        ) as version_rank
    from source

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
    where version_rank = 1

),

final as (

    select * from renamed

)

select * from final
