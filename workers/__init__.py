"""Celery app and tasks: turn, deliver, redrive."""
