{#
    Currency conversion helpers for the intermediate models, the only place where amounts
    are converted to the base currency. fx rule (SPEC "extract contract"): the latest rate
    on or before the row's date; rate 1 when the currency is the base currency.
#}

{#- fx_rate_days: select over `fx_rates` (a CTE or relation with currency, rate_date,
    rate_to_base) giving, for each currency, one row per day from its first rate_date to
    `last_date` (an expression: the latest date the statement looks up) with the rate valid
    that day: the latest rate on or before it. Dates before a currency's first rate have no
    row (no rate). Each rate holds from its rate_date until the day before the next rate of
    the same currency; the newest one until `last_date`.

    A day table, not the validity periods themselves: the join on (currency, day) is an
    equality a hash join can use, where `date >= valid_from and date < valid_to` could only
    be a filter over every period of the currency, for every row. At 100,000 customers the
    order lines' conversion compared each of 3.7 M lines with every one of its currency's
    730 daily periods (203 M comparisons, 23.8 s; 6.4-8.3 s with the day table,
    docs/performance.md "Stop 29"). The table has (days between a currency's first rate and
    `last_date`) rows per currency: 3,650 for ten years. -#}
{% macro fx_rate_days(fx_rates, last_date) -%}
    select
        periods.currency,
        cast(rate_day as date) as rate_day,
        periods.rate_to_base
    from (
        select
            currency,
            rate_to_base,
            rate_date as valid_from_date,
            lead(rate_date) over (partition by currency order by rate_date) as valid_to_date
        from {{ fx_rates }}
    ) as periods
    cross join lateral generate_series(
        periods.valid_from_date,
        -- the newest rate until the latest date looked up (greatest ignores a null: no rows)
        coalesce(periods.valid_to_date - 1, greatest(periods.valid_from_date, {{ last_date }})),
        interval '1 day'
    ) as rate_day
{%- endmacro %}


{#- fx_rate_day_matches: join condition picking the row of `days` (fx_rate_days) for
    `currency_expr` on `date_expr`. -#}
{% macro fx_rate_day_matches(days, currency_expr, date_expr) -%}
    {{ currency_expr }} = {{ days }}.currency
        and {{ date_expr }} = {{ days }}.rate_day
{%- endmacro %}


{#- fx_rate_or_one: the rate from the joined period, or 1 for the base currency. -#}
{% macro fx_rate_or_one(currency_expr, rate_expr) -%}
    case
        when {{ currency_expr }} = {{ base_currency() }} then cast(1 as numeric)
        else {{ rate_expr }}
    end
{%- endmacro %}
