"""The engine: the I/O shell around the workspace cores. The local workspaces and the effects
their cores ask for (the errands), the lease commands of tabs and of backend jobs, the heartbeat,
the watched workspaces of list pages, the pub/sub router and the expiry sweeper."""
