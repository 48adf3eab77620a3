"""Whether a Dask scheduler answers at a ``tcp://`` address, checked before Dask's client
connects.

Dask's client writes its handshake and then waits for the scheduler's with no time limit, so
at an address where some other server listens (a web server, such as a dashboard on 8787) it
waits for ever, or reads the first bytes of that server's reply as the length of a message
and fails allocating exabytes. A Dask server speaks first: on accepting a connection it sends
its handshake, a message whose first 8 bytes are its length and whose next 8 are its count of
frames (little-endian). So connect, read 16 bytes within the time left, and look at them.
"""
import socket
import struct
import time

__all__ = ["check_scheduler_answers"]

# a handshake is a frame of some hundred bytes; these bounds only tell it from other servers'
_MAX_HANDSHAKE_BYTES = 1 << 20
_MAX_HANDSHAKE_FRAMES = 64
_RETRY_SECONDS = 0.1  # between refused connections: a scheduler may still be starting


def check_scheduler_answers(address, timeout):
    """Raise ConnectionError unless a Dask server answers at ``address`` within ``timeout``
    seconds. Only ``tcp://`` addresses (and ``host:port``) are probed; others are left to
    Dask."""
    from distributed.comm.addressing import parse_address, parse_host_port
    try:
        scheme, location = parse_address(address)
        host, port = parse_host_port(location)
    except ValueError:
        return  # Dask's client names what is wrong with the address
    if scheme != "tcp":
        return
    deadline = time.monotonic() + timeout
    with _connect(address, host, port, deadline, timeout) as connection:
        first, closed = _read(connection, 16, deadline)
    if len(first) < 16:
        sent = "nothing" if not first else f"only {first!r}"
        raise ConnectionError(
            f"no Dask scheduler answers at {address!r}: a server there accepted the connection "
            f"but sent {sent} " + ("and closed it" if closed else f"within {timeout} s") +
            ", where a scheduler sends its handshake at once (is it a web server, such as a "
            "dashboard on port 8787? a scheduler listens on 8786 by default)")
    length, frames = struct.unpack("<QQ", first)
    if not (16 <= length <= _MAX_HANDSHAKE_BYTES and 1 <= frames <= _MAX_HANDSHAKE_FRAMES):
        raise ConnectionError(
            f"no Dask scheduler answers at {address!r}: the server there began with {first!r}, "
            f"which is not a Dask handshake (a scheduler listens on 8786 by default)")


def _connect(address, host, port, deadline, timeout):
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ConnectionError(f"could not reach the Dask scheduler at {address!r} within "
                                  f"{timeout} s")
        try:
            return socket.create_connection((host, port), timeout=left)
        except ConnectionRefusedError:
            time.sleep(min(_RETRY_SECONDS, max(0.0, deadline - time.monotonic())))
        except socket.timeout:
            pass  # the deadline has passed
        except OSError as error:  # unknown host, no route: retrying will not help
            raise ConnectionError(f"could not reach the Dask scheduler at {address!r}: "
                                  f"{error}") from None

def _read(connection, count, deadline):
    """(up to count bytes, whether the server closed the connection): fewer bytes where it
    closed or the deadline passed first."""
    data = b""
    while len(data) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            return data, False
        connection.settimeout(left)
        try:
            chunk = connection.recv(count - len(data))
        except socket.timeout:
            return data, False
        except ConnectionError:
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False
