{#
    `expression` holds for every row of `model` (or, with `group_by`, for every group: the
    expression may then use aggregates). Fails with the rows / groups where it does not.
    Usage:
        data_tests:
          - expression_is_true:
              arguments:
                expression: "net_revenue = gross_revenue - discount"
          - expression_is_true:
              arguments:
                expression: "sum(allocated_budget) = 100"
                group_by: [as_of_date]
#}
{% test expression_is_true(model, expression, group_by=none) %}

{% if group_by %}
select
    {{ group_by | join(', ') }}
from {{ model }}
group by {{ group_by | join(', ') }}
having not coalesce(({{ expression }}), false)
{% else %}
select *
from {{ model }}
where not coalesce(({{ expression }}), false)
{% endif %}

{% endtest %}
