"""The engine: the I/O shell around the workspace cores: the local workspaces and the effects they
ask for, the tabs' lease commands, and the heartbeat."""
