"""Connection handling: one ``/ws`` connection from its Origin check and handshake to its read loop
(the session), and the tab: its outgoing queue, close watchdog and ping bookkeeping."""
