"""atheris target: the edge's whole inbound path, from a datagram (and the same bytes as a
TCP message) to the encoded event it would publish: parse, validate, transaction layer,
mapping, ``encode_event``/msgpack and redis-py's argument encoding; everything but the
sockets and the Redis round trip. An exception after parsing (issue 18, F1: a Call-ID that
is not UTF-8 failed in ``encode_event``) is a crash here. Usage as the other targets."""

from __future__ import annotations

from _target import contracts, main


def test_one_input(data: bytes) -> None:
    contracts.check_edge_path(data)


if __name__ == "__main__":
    main(test_one_input)
