{#
    A parent's column equals the sum of a column over its child rows (0 when it has none),
    e.g. fct_orders.net_revenue = sum(fct_order_lines.net_revenue) per order_id.
    Usage (on the parent's column):
        data_tests:
          - equals_sum_of_children:
              arguments:
                child_model: ref('fct_order_lines')
                child_column: net_revenue
                key: order_id
#}
{% test equals_sum_of_children(model, column_name, child_model, child_column, key) %}

with

parents as (

    select
        {{ key }} as parent_key,
        {{ column_name }} as parent_value
    from {{ model }}

),

children as (

    select
        {{ key }} as parent_key,
        sum({{ child_column }}) as children_value
    from {{ child_model }}
    group by {{ key }}

),

final as (

    select
        parents.parent_key,
        parents.parent_value,
        coalesce(children.children_value, 0) as children_value
    from parents
    left join children
        on parents.parent_key = children.parent_key
    where parents.parent_value is distinct from coalesce(children.children_value, 0)

)

select * from final

{% endtest %}
