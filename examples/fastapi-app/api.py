"""fastapi-app: a FastAPI app that runs on Push unchanged (push.ron: `(asgi: "api:app")`).

    push deploy examples/fastapi-app --app api
    curl -H 'X-Push-App: api' http://127.0.0.1:8001/items/3?q=x
    curl -N -H 'X-Push-App: api' http://127.0.0.1:8001/events     -> Server-Sent Events

The lifespan runs once per worker process when the version loads there; request bodies
stream in (`request.stream()`), StreamingResponse streams out chunk by chunk.
"""

import asyncio
import json
import os
from contextlib import asynccontextmanager
from importlib import resources

import data  # the package holding words.json (app modules are imported when the version loads)
import push
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse


@asynccontextmanager
async def lifespan(app):
    # Once per worker: read the data file that deployed with the code.
    app.state.words = json.loads(resources.files("data").joinpath("words.json").read_text())
    app.state.worker = os.getpid()
    yield


app = FastAPI(lifespan=lifespan)


@app.get("/items/{item_id}")
async def item(item_id: int, q: str | None = None):
    return {"item_id": item_id, "q": q, "node": push.node.id}


@app.get("/words")
async def words(request: Request):
    return {"words": request.app.state.words, "worker": request.app.state.worker}


@app.post("/upload")
async def upload(request: Request):
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
    return {"bytes": size}


@app.get("/events")
async def events():
    async def stream():
        for n in range(5):
            yield f"id: {n}\ndata: {json.dumps({'tick': n})}\n\n"
            await asyncio.sleep(1)

    return StreamingResponse(stream(), media_type="text/event-stream")
