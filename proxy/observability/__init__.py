"""Seeing memproxy run: Prometheus metrics (``/metrics``) and optional OpenTelemetry traces."""
