"""SMS through Twilio: ``channel`` sends and parses, ``webhooks`` is its inbound router."""
