"""Connections: one ``/ws`` connection's life, from its Origin check to its end.

``endpoint`` accepts it and gives it an ``output`` (its outgoing frames, bounded in bytes); the
``session`` runs its one loop: the first frame (``handshake``) makes it a tab (``tab_role``,
``tab``) or a watcher (``watcher_role``), its token is verified and kept (``credential``), its user
admitted (``admission``), and every later frame goes through the ``throttle`` to its role.
``keepalive`` numbers its pings; ``transport`` reaches what ASGI does not expose of it;
``capacity`` and ``origin`` decide whether it is served at all."""
