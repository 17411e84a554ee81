"""The SIP edge: sockets and transactions on one side, Redis event and command streams on
the other. ``mapping`` is sans-I/O; ``transport`` and ``process`` are the asyncio adapters."""
