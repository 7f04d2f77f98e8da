"""A daemon placed by capability: it runs only on nodes that have a GPU.

Start a node that says it has one (or tag it), then deploy:

    push node --id 4 --join 127.0.0.1:7001 --listen 127.0.0.1:7004 --data .push/node4 \\
        --token-file .push/token --gpu true --tag ssd
    push deploy examples/gpu-daemon
    push daemons        # trainer and indexer run on node 4; with no such node: "unplaced"
    push registry       # every node's cores, memory, GPU and tags

`--gpu true` is a capability: `where={"gpu": True}` matches it. A tag is a name:
`--tag gpu` is what `where="gpu"` and `push.run(..., on="tag:gpu")` match.

A joining node becomes a voter: the 3-node `push up` cluster now has 4 voters and needs 3 of
them for every write. Node removal is not there yet, so a node you stop for good keeps
counting: keep it running while you use the cluster, or start the experiment in a scratch
directory (`push up --dir /tmp/gpu-demo`) and delete that directory afterwards. If too many
voters are gone, writes fail at once with "quorum lost: N of M voters answer …, K more
voters are missing", and `push status` lists which; bring those nodes back (same --id and
--data) to heal the cluster.
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
