{#
    Currency conversion helpers for the intermediate models, the only place where amounts
    are converted to the base currency. fx rule (SPEC "extract contract"): the latest rate
    on or before the row's date; rate 1 when the currency is the base currency.
#}

{#- The fx rule as two equality-friendly joins (fx_rate_join), over two CTEs a model defines:

        fx_rate_days as (select * from {{ ref('int_fx_rate_days') }}),
        fx_rate_latest as ({{ fx_rate_latest('fx_rates') }}),

    (int_fx_rate_days is `fx_rate_days('fx_rates')` as a table: the planner knows its size)

    - fx_rate_days: for each currency, one row per day from its first rate_date to the day
      before its newest one, with the rate valid that day (the latest on or before it);
    - fx_rate_latest: each currency's newest rate, valid from its rate_date on.

    A date finds its rate in exactly one of them (the days end where the newest rate begins),
    or in neither before the currency's first rate (no rate).

    Not the validity periods themselves (`date >= valid_from and (date < valid_to or valid_to
    is null)`): a join can only hash or merge such periods on the currency, then compare every
    row with every period of its currency. At 100,000 customers the order lines' conversion
    made 203 M such comparisons (23.8 s; 6.4-8.3 s with a day table, docs/performance.md
    "Stop 29"). The day table has (days from a currency's first rate to its newest) rows per
    currency: 3,650 for ten years of rates. -#}
{% macro fx_rate_days(fx_rates) -%}
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
        periods.valid_from_date, periods.valid_to_date - 1, interval '1 day'
    ) as rate_day
    -- the newest rate has no end: fx_rate_latest
    where periods.valid_to_date is not null
{%- endmacro %}


{% macro fx_rate_latest(fx_rates) -%}
    select distinct on (currency)
        currency,
        rate_date as valid_from_date,
        rate_to_base
    from {{ fx_rates }}
    order by currency, rate_date desc
{%- endmacro %}


{#- fx_rate_join: the two left joins giving the rate of `currency_expr` on `date_expr` to the
    rows of the from clause, read as fx_rate_on_date(alias). -#}
{% macro fx_rate_join(alias, currency_expr, date_expr) -%}
    left join fx_rate_days as {{ alias }}
        on {{ currency_expr }} = {{ alias }}.currency
            and {{ date_expr }} = {{ alias }}.rate_day
    left join fx_rate_latest as {{ alias }}_latest
        on {{ currency_expr }} = {{ alias }}_latest.currency
            and {{ date_expr }} >= {{ alias }}_latest.valid_from_date
{%- endmacro %}


{% macro fx_rate_on_date(alias) -%}
    coalesce({{ alias }}.rate_to_base, {{ alias }}_latest.rate_to_base)
{%- endmacro %}


{#- fx_rate_or_one: the rate from the joined period, or 1 for the base currency. -#}
{% macro fx_rate_or_one(currency_expr, rate_expr) -%}
    case
        when {{ currency_expr }} = {{ base_currency() }} then cast(1 as numeric)
        else {{ rate_expr }}
    end
{%- endmacro %}
