"""Conversations: settings, database, models, lifecycle transitions and ingest."""
