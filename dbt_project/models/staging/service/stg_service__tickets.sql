-- One row per service ticket: the latest delivered version of each ticket_id.
with

source as (

    select * from {{ source('service', 'tickets') }}
    -- as known on the as-of date: later deliveries are not visible to this run
    where {{ delivered_by_as_of_date() }}

),

deduplicated as (

    select
        *,
        row_number() over (
            partition by ticket_id
            order by updated_at desc, _load_id desc, _line_number desc
        ) as version_rank
    from source

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
    where version_rank = 1

),

final as (

    select * from renamed

)

select * from final
