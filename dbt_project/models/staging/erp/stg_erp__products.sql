-- One row per product: the latest delivered version of each product_id.
{{ staging_config(['product_id'], not_null_columns=['standard_cost']) }}

with

source as (

    {{ delivered_versions_to_stage(source('erp', 'products'), ['product_id']) }}

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
