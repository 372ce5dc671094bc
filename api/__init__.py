"""The HTTP API: webhooks, operator and outbound routes."""
