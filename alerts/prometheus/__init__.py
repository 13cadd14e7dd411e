"""Prometheus recording/alerting rules for fairwatch and their generator."""
