"""The operations plane: metrics, the audit log, the server registry, operator commands and the
overview the dashboard shows. It observes the serving parts (lease events, telemetry, counts)
and never drives them, except for the operator actions it is asked for (closing a tab)."""
