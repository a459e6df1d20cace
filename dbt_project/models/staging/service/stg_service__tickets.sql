-- One row per service ticket: the latest delivered version of each ticket_id.
{{ staging_config(['ticket_id'], not_null_columns=['customer_id', 'opened_at']) }}

with

source as (

    {{ delivered_versions_to_stage(source('service', 'tickets'), ['ticket_id']) }}

),

deduplicated as (

    {{ latest_delivered_version('source', ['ticket_id']) }}

),

renamed as (

    select
        -- ids
        ticket_id,
        customer_id,

        -- attributes
        category,
        priority,

        -- quantities
        handling_minutes,

        -- dates
        opened_at,
        closed_at,
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
