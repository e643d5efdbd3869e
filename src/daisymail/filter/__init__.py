"""Content filters (spam checks) asked before Daisy answers a message."""
