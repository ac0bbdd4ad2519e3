"""The process that records one persotool run in MLflow (started by `tracking.preflight`).

It imports MLflow as soon as it starts, in parallel with the command's work, then reads the run
to record from its standard input and answers one JSON line: {"run_id": ...} or {"error": ...}.
An empty input (the command failed before recording) ends it without recording anything.
"""

from __future__ import annotations

import json
import os
import pickle
import sys


def main() -> None:
    answer = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout = sys.stderr  # MLflow prints run links; only the answer goes to the command
    from persotool import tracking
    from persotool.errors import TrackingError

    for key, value in tracking.HTTP_LIMITS.items():
        os.environ.setdefault(key, value)
    tracking._quiet()
    import mlflow.store.tracking.sqlalchemy_store
    import mlflow.tracking  # noqa: F401

    data = sys.stdin.buffer.read()
    if not data:
        return
    run, spec = pickle.loads(data)  # written by our own parent process, never by a user
    try:
        reply = {"run_id": tracking._record(run, spec)}
    except TrackingError as exc:
        reply = {"error": exc.message}
    except BaseException as exc:
        reply = {"error": f"could not record the MLflow run: {type(exc).__name__}: {exc}"}
    answer.write(json.dumps(reply) + "\n")
    answer.flush()


if __name__ == "__main__":
    main()
