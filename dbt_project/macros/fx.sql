{#
    Currency conversion helpers for the intermediate models, the only place where amounts
    are converted to the base currency. fx rule (SPEC "extract contract"): the latest rate
    on or before the row's date; rate 1 when the currency is the base currency.
#}

{#- fx_rate_periods: select over `fx_rates` (a CTE or relation with currency, rate_date,
    rate_to_base) giving each rate's validity [valid_from_date, valid_to_date). -#}
{% macro fx_rate_periods(fx_rates) -%}
    select
        currency,
        rate_to_base,
        rate_date as valid_from_date,
        lead(rate_date) over (partition by currency order by rate_date) as valid_to_date
    from {{ fx_rates }}
{%- endmacro %}


{#- fx_rate_period_matches: join condition picking the period of `periods` valid on
    `date_expr` for `currency_expr`. -#}
{% macro fx_rate_period_matches(periods, currency_expr, date_expr) -%}
    {{ currency_expr }} = {{ periods }}.currency
        and {{ date_expr }} >= {{ periods }}.valid_from_date
        and (
            {{ date_expr }} < {{ periods }}.valid_to_date
            or {{ periods }}.valid_to_date is null
        )
{%- endmacro %}


{#- fx_rate_or_one: the rate from the joined period, or 1 for the base currency. -#}
{% macro fx_rate_or_one(currency_expr, rate_expr) -%}
    case
        when {{ currency_expr }} = {{ base_currency() }} then cast(1 as numeric)
        else {{ rate_expr }}
    end
{%- endmacro %}
