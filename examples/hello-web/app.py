"""hello-web v1: the versioned hello world.

    push deploy examples/hello-web -m "v1"
    curl http://127.0.0.1:8001/            -> hello from v1 on node N
    push deploy examples/hello-web-v2 -m "v2"
    curl http://127.0.0.1:8001/            -> HELLO FROM V2 ... (on every node)
    push rollback
    curl http://127.0.0.1:8001/            -> hello from v1 again
"""

import push
from greetings.text import greeting

visits = push.kv("hello-web")


@push.route("GET", "/")
def index():
    return f"{greeting()} on node {push.node.id}\n"


@push.route("GET", "/visits")
def count():
    """Counts visits in a replicated dict, atomically with compare-and-set."""
    while True:
        current = visits.get("count")
        if visits.cas("count", current, (current or 0) + 1):
            return {"visits": (current or 0) + 1, "version": push.version}
