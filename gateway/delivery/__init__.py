"""What leaves the gateway: the outbox worker, mail, webhooks and the broker."""
