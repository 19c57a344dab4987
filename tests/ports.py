"""A free TCP port on the loopback interface, for tests that start servers or process groups."""

import socket


def free_port() -> int:
    """A port the OS has just handed out on 127.0.0.1 (free at the time of the call)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
