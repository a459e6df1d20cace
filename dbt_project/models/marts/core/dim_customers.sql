-- One row per customer with its current (latest delivered) attributes.
with

customers as (

    select * from {{ ref('stg_crm__customers') }}

),

final as (

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
        coalesce(is_active, true) as is_active,

        -- money
        credit_limit,

        -- dates
        created_at,
        updated_at

    from customers

)

select * from final
