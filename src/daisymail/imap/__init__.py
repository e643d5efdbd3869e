"""The IMAP4rev1 server: sans-I/O protocol core, commands over Maildir++ folders, glue."""
