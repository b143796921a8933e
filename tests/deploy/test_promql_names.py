"""promql_names alone: the names it finds in panel targets and rule expressions, and the series
names an exposition can hold."""

from __future__ import annotations

from tests.deploy.promql_names import exposed_names, metric_names, panel_expressions, rule_expressions


def test_names_in_a_grafana_target_without_functions_labels_or_variables() -> None:
    expression = (
        "histogram_quantile(0.99, sum by (le, destination) "
        '(rate(aep_relay_ingest_duration_seconds_bucket{job=~"$job", code!="by"}[$__rate_interval])))'
    )
    assert metric_names([expression]) == {"aep_relay_ingest_duration_seconds_bucket"}


def test_names_in_alerting_rules_with_binary_operators_offsets_and_vector_matching() -> None:
    expressions = [
        "increase(aep_relay_dead_letters_total[10m]) > 0",
        "max by (destination) (aep_relay_store_oldest_pending_age_seconds) > 15 * 60",
        "sum(rate(aep_relay_deliveries_delivered_total[5m])) * 60 < 0.5 * "
        "max(aep_relay_ratelimit_rate_per_minute) and on (destination) aep_relay_store_pending_deliveries > 0",
        "aep_relay_mappings_loaded offset 1h unless ignoring(instance) group_left(job) up == bool 1e3",
        'absent(aep_relay_circuit_state{state="open"}) or vector(0)',
        "sum without (code) (aep_relay_delivery_attempts_total) / ignoring() sum(aep_relay_events_received_total)",
    ]
    assert metric_names(expressions) == {
        "aep_relay_dead_letters_total",
        "aep_relay_store_oldest_pending_age_seconds",
        "aep_relay_deliveries_delivered_total",
        "aep_relay_ratelimit_rate_per_minute",
        "aep_relay_store_pending_deliveries",
        "aep_relay_mappings_loaded",
        "up",
        "aep_relay_circuit_state",
        "aep_relay_delivery_attempts_total",
        "aep_relay_events_received_total",
    }


def test_a_misspelt_name_is_found_as_written() -> None:
    assert metric_names(["rate(aep_relay_dead_letter_total[5m])"]) == {"aep_relay_dead_letter_total"}


def test_expressions_of_panels_rows_variables_and_rule_files() -> None:
    dashboard = {
        "panels": [
            {"targets": [{"expr": "a_total"}, {"refId": "B"}]},
            {"type": "row", "panels": [{"targets": [{"expr": "b"}]}]},
        ],
        "templating": {"list": [{"type": "query", "query": {"query": "label_values(c, job)"}}]},
    }
    assert panel_expressions(dashboard) == ["a_total", "b", "label_values(c, job)"]
    assert metric_names(panel_expressions(dashboard)) == {"a_total", "b", "c"}
    rules = {"groups": [{"rules": [{"alert": "A", "expr": "x_total > 0"}, {"record": "r", "expr": "y"}]}]}
    operator_rule = {"kind": "PrometheusRule", "spec": rules}
    assert rule_expressions(rules) == rule_expressions(operator_rule) == ["x_total > 0", "y"]


def test_exposed_names_follow_the_type_lines() -> None:
    exposition = (
        "# HELP a_things Things\n# TYPE a_things counter\n"
        "# HELP d_things_total Things\n# TYPE d_things_total counter\n"
        "# HELP b_seconds Time\n# TYPE b_seconds histogram\nb_seconds_count 1.0\n"
        "# HELP c_depth Depth\n# TYPE c_depth gauge\n"
    )
    assert exposed_names(exposition) == {
        "a_things_total", "a_things_created", "d_things_total", "d_things_created",
        "b_seconds_bucket", "b_seconds_sum", "b_seconds_count", "b_seconds_created",
        "c_depth",
    }  # fmt: skip
