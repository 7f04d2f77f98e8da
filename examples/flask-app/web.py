"""flask-app: a Flask app that runs on Push unchanged (push.ron names it: `(wsgi: "web:app")`).

    push deploy examples/flask-app --app flask
    curl -H 'X-Push-App: flask' http://127.0.0.1:8001/?name=Ada     -> a page from templates/
    curl -N -H 'X-Push-App: flask' http://127.0.0.1:8001/events      -> Server-Sent Events
    curl -H 'X-Push-App: flask' -X POST --data-binary @big.bin http://127.0.0.1:8001/upload

Templates and data files deploy with the code; the request body streams in, and a generator
response streams out, each chunk reaching the client as soon as it is yielded. The app's
secrets and config reach it as environment variables, as on any other host:

    printf 'postgres://db/prod' | push secret set flask DATABASE_URL
    push config set flask GREETING hi
    curl -H 'X-Push-App: flask' http://127.0.0.1:8001/settings
"""

import hashlib
import json
import os
import time

import push
from flask import Flask, Response, render_template, request

app = Flask(__name__)
visits = push.kv("visits")


@app.get("/")
def index():
    count = (visits.get("count", stale=True) or 0) + 1
    visits["count"] = count
    return render_template("hello.html", name=request.args.get("name", "world"), node=push.node.id, count=count)


@app.post("/upload")
def upload():
    digest, size = hashlib.sha256(), 0
    while chunk := request.stream.read(65536):
        digest.update(chunk)
        size += len(chunk)
    return {"bytes": size, "sha256": digest.hexdigest()}


@app.get("/events")
def events():
    def stream():
        for n in range(5):
            yield f"id: {n}\ndata: {json.dumps({'tick': n, 'node': push.node.id})}\n\n"
            time.sleep(1)

    return Response(stream(), mimetype="text/event-stream", headers={"Cache-Control": "no-cache"})


@app.get("/settings")
def settings():
    # Read the way any twelve-factor app does; never echo a secret itself.
    database = os.environ.get("DATABASE_URL")
    return {
        "greeting": os.environ.get("GREETING", "hello"),
        "greeting_in_environ": request.environ.get("GREETING"),
        "database_sha256": hashlib.sha256(database.encode()).hexdigest() if database else None,
    }
