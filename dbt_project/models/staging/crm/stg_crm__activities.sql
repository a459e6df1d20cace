-- One row per sales activity: the latest delivered version of each activity_id.
with

source as (

    select * from {{ source('crm', 'activities') }}
    -- as known on the as-of date: later deliveries are not visible to this run
    where {{ delivered_by_as_of_date() }}

),

deduplicated as (

    select
        *,
        row_number() over (
            partition by activity_id
            order by updated_at desc, _load_id desc, _line_number desc
        ) as version_rank
    from source

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
    where version_rank = 1

),

final as (

    select * from renamed

)

select * from final
