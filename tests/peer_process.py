"""The far end of a session in a process of its own, for the conformance suite's
two-process cases (a peer killed with SIGKILL): a raw-adapter responder that echoes
every message back on its stream. Run as::

    python -m tests.peer_process PORT_A,PORT_B,... PEER_PORT_A,PEER_PORT_B,...

(its local ports, then the initiator's). It prints ``ready`` once its sockets are open
and runs until it is killed. Its config is `tests.test_adapters.config()`'s, with no
timeouts of its own (it waits for its peer as long as it lives)."""

from __future__ import annotations

import sys
import time

import attrs

from plait_adapters import LinkSpec, raw
from tests.test_adapters import config


def main(argv: list[str]) -> None:
    mine = [int(p) for p in argv[0].split(",")]
    theirs = [int(p) for p in argv[1].split(",")]
    links = [
        LinkSpec(local=("127.0.0.1", a), remote=("127.0.0.1", b))
        for a, b in zip(mine, theirs, strict=True)
    ]
    cfg = attrs.evolve(config(), handshake_timeout_ns=None, idle_timeout_ns=None)
    with raw.open_session(cfg, links, initiator=False, busy_poll_ns=0) as s:
        print("ready", flush=True)
        for msg in s:
            s.send(msg.data, msg.stream)
    time.sleep(3600)  # the test kills it


if __name__ == "__main__":
    main(sys.argv[1:])
