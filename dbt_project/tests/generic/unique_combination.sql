{#
    The combination of `columns` is unique in `model` (multi-column key).
    Usage:
        data_tests:
          - unique_combination:
              arguments:
                columns: [order_id, line_number]
#}
{% test unique_combination(model, columns) %}

select
    {{ columns | join(', ') }},
    count(*) as row_count
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1

{% endtest %}
