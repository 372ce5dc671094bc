"""Memory: identities, the two-week history window, summaries and retention.

Built with the memory issue; the core resolves addresses to customers in
``conversations.customers`` because ingest needs it before any memory exists.
"""
