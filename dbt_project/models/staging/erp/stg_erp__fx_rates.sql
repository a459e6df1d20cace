-- One row per (rate_date, currency): fx_rates has no updated_at, so the latest load wins.
{{ staging_config(['rate_date', 'currency'], not_null_columns=['rate_to_base']) }}

with

source as (

    {{ delivered_versions_to_stage(source('erp', 'fx_rates'), ['rate_date', 'currency']) }}

),

deduplicated as (

    {{ latest_delivered_version('source', ['rate_date', 'currency'], newest_first=[]) }}

),

renamed as (

    select
        -- ids
        currency,

        -- dates
        rate_date,

        -- money: 1 unit of currency = rate_to_base units of the base currency
        rate_to_base,

        -- load metadata
        _load_id as load_id,
        _business_date as business_date

    from deduplicated

),

final as (

    select * from renamed

)

select * from final
