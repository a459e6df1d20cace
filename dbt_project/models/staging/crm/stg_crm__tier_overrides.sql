-- One row per manual tier override (customer_id, valid_from): tier_overrides has no
-- updated_at, so the latest load wins (then the last line of the file).
{{ staging_config(['customer_id', 'valid_from'], not_null_columns=['value_tier', 'reason', 'set_by']) }}

with

source as (

    {{ delivered_versions_to_stage(source('crm', 'tier_overrides'), ['customer_id', 'valid_from']) }}

),

deduplicated as (

    {{ latest_delivered_version('source', ['customer_id', 'valid_from'], newest_first=[]) }}

),

renamed as (

    select
        -- ids
        customer_id,

        -- attributes
        value_tier,
        reason,
        set_by,

        -- dates
        valid_from,
        valid_to,

        -- load metadata
        _load_id as load_id,
        _business_date as business_date

    from deduplicated

),

final as (

    select * from renamed

)

select * from final
