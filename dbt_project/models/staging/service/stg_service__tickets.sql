-- One row per service ticket: the latest delivered version of each ticket_id.
with

source as (

    select * from {{ source('service', 'tickets') }}
    -- as known on the as-of date: later deliveries are not visible to this run
    where {{ delivered_by_as_of_date() }}

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
