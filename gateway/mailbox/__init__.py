"""IMAP mailboxes fetched into the inbox, exactly once: client, OAuth tokens, fetcher."""
