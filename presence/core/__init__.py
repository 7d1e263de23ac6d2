"""The workspace core, free of I/O: what Redis stores and publishes (records, events), this
process's replica of a workspace, the domain rules, and the workspace state machine that turns
events into effects."""
