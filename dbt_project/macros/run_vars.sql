{#
    The run's vars as SQL literals. Vars come from config/tierflow.yml (validated by
    tierflow.config) and the run's as-of date; they are checked again here because they are
    pasted into SQL.
#}

{% macro as_of_date() %}
    {%- set value = var('as_of_date') | string -%}
    {%- if not modules.re.match('^[0-9]{4}-[0-9]{2}-[0-9]{2}$', value) -%}
        {{ exceptions.raise_compiler_error("var as_of_date must be 'YYYY-MM-DD', got '" ~ value ~ "'") }}
    {%- endif -%}
    cast('{{ value }}' as date)
{%- endmacro %}


{% macro base_currency() %}
    {%- set value = var('base_currency') | string -%}
    {%- if not modules.re.match('^[A-Z]{3}$', value) -%}
        {{ exceptions.raise_compiler_error("var base_currency must be a 3-letter upper-case code, got '" ~ value ~ "'") }}
    {%- endif -%}
    '{{ value }}'
{%- endmacro %}


{#- A text value as a quoted SQL string literal (single quotes doubled). -#}
{% macro sql_literal(value) -%}
    '{{ value | string | replace("'", "''") }}'
{%- endmacro %}


{#- A number from the vars as a numeric SQL literal (fails on anything else). -#}
{% macro sql_number(value) -%}
    {%- set text = value | string -%}
    {%- if not modules.re.match('^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$', text) -%}
        {{ exceptions.raise_compiler_error("expected a number in the vars, got '" ~ text ~ "'") }}
    {%- endif -%}
    cast({{ text }} as numeric)
{%- endmacro %}
