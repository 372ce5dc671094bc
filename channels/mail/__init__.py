"""The email channel: raw MIME in (with threading and loop safety), SMTP out."""
