"""Memory: identities (linking, merging, erasure), the history window, retention."""
