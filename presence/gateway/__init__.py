"""The Redis gateway: the one way the server reaches Redis (commands, scripts, pub/sub)."""
