-- One row per sales activity: the latest delivered version of each activity_id.
{{ staging_config(['activity_id'], not_null_columns=['customer_id', 'activity_date']) }}

with

source as (

    {{ delivered_versions_to_stage(source('crm', 'activities'), ['activity_id']) }}

),

deduplicated as (

    {{ latest_delivered_version('source', ['activity_id']) }}

),

renamed as (

    select
        -- ids
        activity_id,
        customer_id,

        -- attributes
        activity_type,
        owner,

        -- money: the extract contract has no currency for activities, so cost is taken
        -- to be in the base currency as delivered
        cost,

        -- dates
        activity_date,
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
