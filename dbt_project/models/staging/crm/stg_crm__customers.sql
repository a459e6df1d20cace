-- One row per customer: the latest delivered version of each customer_id.
{{ staging_config(['customer_id'], not_null_columns=['created_at', 'updated_at']) }}

with

source as (

    {{ delivered_versions_to_stage(source('crm', 'customers'), ['customer_id']) }}

),

deduplicated as (

    {{ latest_delivered_version('source', ['customer_id']) }}

),

renamed as (

    select
        -- ids
        customer_id,
        parent_customer_id,

        -- attributes
        customer_name,
        customer_type,
        industry,
        region,
        country,
        city,
        channel,
        account_manager,
        payment_terms_days,
        is_active,

        -- money
        credit_limit,

        -- dates
        created_at,
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
