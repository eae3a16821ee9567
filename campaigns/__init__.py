"""WHETHER / WHAT / HOW: consent, campaigns, send decisions, the outbox and the channels."""
