"""Beat schedule and sweeps."""
