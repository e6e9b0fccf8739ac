"""The far end of a session in a process of its own, for the conformance suite's
two-process cases: a raw-adapter responder. Run as::

    python -m tests.peer_process PORT_A,PORT_B,... PEER_PORT_A,PEER_PORT_B,... [MODE] [PSK]

(its local ports, then the initiator's). It prints ``ready`` once its sockets are open.
Its config is `tests.test_adapters.config()`'s (with `PSK`, 64 hex digits, if given).
MODE:

* ``echo`` (the default): echoes every message back on its stream, with no timeouts of
  its own, and runs until it is killed;
* ``collect``: gathers the messages until the session ends, then prints ``got N HEX``
  (N messages, HEX the SHA-256 of them in order) and ``ended REASON`` and exits;
* ``handshake``: waits for the session with a 1 s handshake timeout and prints
  ``ended REASON`` (or ``established``) and exits.
"""

from __future__ import annotations

import hashlib
import sys
import time

import attrs

import plait
from plait_adapters import LinkSpec, raw
from tests.test_adapters import config

S = 1_000_000_000


def main(argv: list[str]) -> None:
    mine = [int(p) for p in argv[0].split(",")]
    theirs = [int(p) for p in argv[1].split(",")]
    mode = argv[2] if len(argv) > 2 else "echo"
    psk = bytes.fromhex(argv[3]) if len(argv) > 3 else None
    links = [
        LinkSpec(local=("127.0.0.1", a), remote=("127.0.0.1", b))
        for a, b in zip(mine, theirs, strict=True)
    ]
    timeout = S if mode == "handshake" else None
    cfg = attrs.evolve(config(psk=psk), handshake_timeout_ns=timeout, idle_timeout_ns=None)
    with raw.open_session(cfg, links, initiator=False, busy_poll_ns=0) as s:
        print("ready", flush=True)
        if mode == "echo":
            for msg in s:
                s.send(msg.data, msg.stream)
            time.sleep(3600)  # the test kills it
        elif mode == "collect":
            digest, count = hashlib.sha256(), 0
            for msg in s:  # ends when the peer closes
                digest.update(msg.data)
                count += 1
            print(f"got {count} {digest.hexdigest()}", flush=True)
        else:
            try:
                s.wait_established(30.0)
                print("established", flush=True)
            except plait.errors.HandshakeFailed:
                pass
        ended = s.ended
        print(f"ended {ended.reason.name if ended is not None else None}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
