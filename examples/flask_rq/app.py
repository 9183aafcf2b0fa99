"""A small Flask + RQ service, as many teams run one: an API key, pickled jobs, its own paths.

    API_KEY=... REDIS_URL=redis://localhost:6379/0 PORT=5000 python app.py
    rq worker --url redis://localhost:6379/0 default

Nothing here knows about the chaos harness or the recovery layer; `target.toml` beside it
tells the harness how to drive it (README "Test your own RQ service").
"""

from __future__ import annotations

import os

import tasks
from flask import Flask, jsonify, request
from redis import Redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job

app = Flask(__name__)
redis = Redis.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
queue = Queue("default", connection=redis)  # RQ's default serializer: pickle


@app.get("/health")
def health():
    return jsonify(ok=True)


@app.post("/enqueue")
def enqueue():
    if request.headers.get("X-API-Key") != os.environ["API_KEY"]:
        return jsonify(error="bad or missing X-API-Key"), 401
    body = request.get_json(silent=True) or {}
    numbers = body.get("numbers")
    if not isinstance(numbers, list):
        return jsonify(error="numbers must be a list"), 400
    job = queue.enqueue(tasks.total, numbers, float(body.get("seconds", 0)))
    return jsonify(id=job.id), 202


@app.get("/job_status/<job_id>")
def job_status(job_id: str):
    try:
        job = Job.fetch(job_id, connection=redis)
    except NoSuchJobError:
        return jsonify(error="no such job"), 404
    status = job.get_status()
    answer = {"state": status, "result": None, "error": None}
    if status == "finished":
        answer["result"] = job.return_value()
    elif status == "failed":
        answer["error"] = (job.latest_result().exc_string or "").strip().splitlines()[-1:]
    return jsonify(answer)


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")))
