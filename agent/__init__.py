"""The agent: turn runner interface, model providers and tools."""
