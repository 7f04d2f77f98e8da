"""A daemon placed by capability: it runs only on nodes that have a GPU.

Start a node that says it has one (or tag it), then deploy:

    push node --id 4 --join 127.0.0.1:7001 --listen 127.0.0.1:7004 --data .push/node4 \\
        --token-file .push/token --gpu true      # or: --tag gpu
    push deploy examples/gpu-daemon
    push daemons        # trainer runs on node 4; with no GPU node it shows "unplaced"
    push registry       # every node's cores, memory, GPU and tags
"""

import push

models = push.kv("models")


@push.daemon(where={"gpu": True})
def trainer(ctx):
    step = 0
    while ctx.sleep(2):
        step += 1
        models.set("trainer", {"node": ctx.node, "step": step})
        ctx.log.info("training step %d on node %s", step, ctx.node)


@push.daemon(where="ssd", replicas=1)
def indexer(ctx):
    """Placed on nodes started with --tag ssd."""
    while ctx.sleep(5):
        ctx.log.info("indexing on node %s", ctx.node)
