"""`python -m harness.testing.api --break NAME`: the service's API with one deliberately broken
behaviour, for the detection-power tests (harness: `--api-cmd "{python} -m harness.testing.api
--break NAME"`). Never a production choice.

| name | what is broken | what must catch it |
|---|---|---|
| flaky-accept | every 2nd `POST /analyze` answers 503 without enqueuing | availability outside faults |
| double-enqueue | every `POST /analyze` enqueues twice, names one | reconciliation: a job nobody was told of |
"""

from __future__ import annotations

import argparse
import itertools
import sys

__all__ = ["BROKEN_APIS", "main"]

BROKEN_APIS = ("flaky-accept", "double-enqueue")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.testing.api", description=__doc__.split("\n\n")[0])
    parser.add_argument("--break", dest="broken", choices=BROKEN_APIS, required=True, help="what to break")
    args = parser.parse_args(argv)
    import uvicorn
    from fastapi.responses import JSONResponse

    from rq_recovery.tracking import Tracker
    from shap_service.api import create_app
    from shap_service.config import settings_for

    settings = settings_for("shap-api")
    if settings is None:
        return 2
    if args.broken == "double-enqueue":
        enqueue = Tracker.enqueue_once

        def twice(self, *a, **kw):
            enqueue(self, *a, **{**kw, "job_id": None})  # "the first one may not have gone through"
            return enqueue(self, *a, **kw)

        Tracker.enqueue_once = twice  # type: ignore[method-assign]
    app = create_app(settings)
    if args.broken == "flaky-accept":
        posts = itertools.count()

        @app.middleware("http")
        async def refuse_every_other(request, call_next):
            if request.method == "POST" and request.url.path == "/analyze" and next(posts) % 2 == 0:
                return JSONResponse({"error": "busy"}, status_code=503)
            return await call_next(request)

    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
