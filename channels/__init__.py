"""Channels: one module per channel, and the registry that names them."""
