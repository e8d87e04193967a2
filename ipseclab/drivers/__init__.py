"""Drivers: the I/O edge that puts the sans-IO core on the wire (TUN, sockets, routes)."""
