"""Lambdas: run a function on every node (or any one, a given one, a tagged set).

    push deploy examples/lambda
    curl http://127.0.0.1:8001/load        # {"1": {...}, "2": {...}, "3": {...}}

From the REPL, any function without closures ships too:

    >>> import os
    >>> push.run(lambda: os.getpid(), on="all")     # fails: `os` is not in the lambda's globals
    >>> def pid():
    ...     import os
    ...     return os.getpid()
    >>> push.run(pid, on="all")
    {1: 41233, 2: 41240, 3: 41251}
"""

import os

import push


def load():
    """This node's load average and pid."""
    one, five, fifteen = os.getloadavg()
    return {"node": push.node.id, "pid": os.getpid(), "load": [one, five, fifteen]}


@push.route("GET", "/load")
def cluster_load():
    return {str(node): info for node, info in push.run(load, on="all").items()}


@push.route("GET", "/somewhere")
def somewhere():
    return push.run("app:load")  # by path, on any one node
