"""Every tunable and shared constant of the harness, once (rq's `defaults.py` is the model).

Modules import their defaults from here; a test or a reader looking for "how long", "how many" or
"which statuses" finds the answer in this one file.
"""

from __future__ import annotations

# --- RQ's statuses, as the checkers read them --------------------------------------------------
# RQ (3.x) has 11 JobStatus values. Only finished/failed mean the job was carried to an end;
# stopped/canceled mean someone gave up on it, which is NOT a recovery.
TERMINAL_STATUSES = ("finished", "failed")
NON_TERMINAL_STATUSES = (
    "created",
    "queued",
    "started",
    "deferred",
    "scheduled",
    "stopped",
    "canceled",
    "rate_limited",
    "ready_to_enqueue",
)
#: Recorded by the harness when the service answers "no such job" (404).
MISSING = "missing"

# --- the workload ------------------------------------------------------------------------------
#: Job kinds a workload can submit; the long ones keep a worker busy long enough to be hit.
JOB_KINDS = ("light", "heavy", "slow", "hang", "hungry")
LONG_KINDS = ("slow", "hang", "hungry")
#: One row of the diabetes data set (10 features), for the tools that submit a single job.
SAMPLE_ROW = [0.03, 0.05, 0.06, 0.02, -0.04, -0.03, -0.04, -0.002, 0.02, -0.017]

# --- leases and bounds -------------------------------------------------------------------------
#: Short leases so that recovery takes seconds, in scenarios and in the repository's tests.
FAST_LEASES: dict[str, str] = {
    "HEARTBEAT_INTERVAL": "0.5",
    "LIVENESS_TTL": "2",
    "SWEEP_INTERVAL": "0.5",
    "CONNECTION_GRACE": "0.5",
}
#: The recovery layer's production defaults, used for the bound when the env leaves them out
#: (the harness does not import the recovery package; these mirror its LIVENESS_TTL / SWEEP_INTERVAL).
SERVICE_LIVENESS_TTL = 6.0
SERVICE_SWEEP_INTERVAL = 2.0
#: Slack on top of lease + sweep + one clean re-run of the slowest job: polling, fork, restart.
DEFAULT_SLACK_S = 2.0

# --- soak --------------------------------------------------------------------------------------
#: Environment variables that size a soak run (a short check, or a longer run); see run.Soak.
SOAK_JOBS_ENV = "HARNESS_SOAK_JOBS"
SOAK_MINUTES_ENV = "HARNESS_SOAK_MINUTES"
#: The longest soak a run may ask for: SCENARIO_TIMEOUT_S["soak"] must cover it plus the drain,
#: the stack start and the final read.
MAX_SOAK_MINUTES = 40.0
#: pytest-timeout per scenario test, by profile.
SCENARIO_TIMEOUT_S = {"ci": 150, "soak": 3000}

# --- progress and report -----------------------------------------------------------------------
#: Seconds between progress lines: redrawn on a terminal, printed plainly in CI logs.
PROGRESS_LIVE_EVERY_S = 0.5
PROGRESS_PLAIN_EVERY_S = 30.0
#: Jobs whose event trail the report shows in full, and events per trail.
MAX_TRAILS = 40
MAX_TRAIL_EVENTS = 120
#: Stuck jobs the report's banner names (the rest as "and N more"), notes per scenario, and
#: characters of one event's data in a trail / of diagnose-worker's full output.
MAX_BANNER_STUCK = 12
MAX_NOTES = 30
MAX_EVENT_DATA_CHARS = 600
MAX_DIAGNOSE_CHARS = 60_000
#: Python distributions whose versions the report's environment lists.
REPORT_PACKAGES = ("shap-chaos", "rq", "redis", "shap", "scikit-learn", "numpy", "fastapi", "uvicorn", "pytest")

# --- the nemesis -------------------------------------------------------------------------------
#: Seconds between looks for a worker running a suitable job (a fault waiting for its target).
TARGET_POLL_S = 0.05
#: kill-horse: a horse can finish its job between being seen and being killed; picks in a row.
KILL_HORSE_TRIES = 5
#: term-worker: seconds of warm shutdown before SIGKILL (`docker stop -t`).
TERM_GRACE_S = 30.0
#: oom, local: a worker tree past this many MB (PSS-summed) is killed by the RSS watchdog; on
#: docker, kill="horse": the worker containers' mem_limit.
OOM_LIMIT_MB = 380
#: oom, docker, kill="tree": a worker container limit this tight makes the worker parent the
#: kernel's victim. Measured here: an idle worker container charges ~150 MB (peak ~180 MB while it
#: trains its models at start); its parent maps ~95 MB of shared libraries (RssFile) that a freshly
#: forked horse does not map. The OOM killer picks the largest RSS: with less headroom than those
#: ~95 MB the horse is still smaller than its parent when the cgroup runs out, so the parent (the
#: container's PID 1) dies and the container with it. 200-220 MB: parent every time; 240 MB:
#: either; 260 MB and up: the horse.
OOM_TREE_LIMIT_MB = 210
#: oom: seconds between the watchdog's looks (local: tree memory; docker: container events).
OOM_WATCH_INTERVAL_S = 0.1
#: oom, docker: after a container's last `oom` event, how long to wait for its `die` event before
#: deciding that only the horse died. Measured here: `die` follows the last `oom` within 20-60 ms.
OOM_DIE_WAIT_S = 0.3
#: oom, docker: the most seconds after the first `oom` event that a kill may take to settle.
OOM_SETTLE_S = 2.0
#: oom: at the end of a run, how long to wait for a kill already seen to be recorded.
OOM_LATE_KILL_S = 3.0
#: TcpProxy (redis-partition, local): bytes per forwarded read, and seconds to reach Redis.
PROXY_BUFSIZE = 64 * 1024
PROXY_CONNECT_TIMEOUT_S = 2.0

#: A `hungry` probe job allocates the workload's alloc_mb plus this much: a bare `rq worker`
#: weighs ~100 MB less than this service's worker (which holds its models), and the oom
#: scenarios' limits are set for the latter.
PROBE_EXTRA_MB = 120

# --- the workload's clients --------------------------------------------------------------------
#: Seconds an HTTP request of a client may take.
CLIENT_REQUEST_TIMEOUT_S = 10.0
#: A submission the API cannot take now (down, 5xx) is retried after this backoff, doubling up to the cap.
CLIENT_BACKOFF_S = 0.1
CLIENT_BACKOFF_MAX_S = 1.0
#: The final pass: seconds it may spend on an API that does not answer, and between two tries.
FINAL_PASS_TIMEOUT_S = 10.0
FINAL_PASS_RETRY_S = 0.2
#: The service's own defaults, for the longest run of a hanging job when the env leaves them out
#: (mirrors of the service's JOB_TIMEOUT / HARD_KILL_GRACE / MAX_ATTEMPTS).
SERVICE_JOB_TIMEOUT_S = 180.0
SERVICE_HARD_KILL_GRACE_S = 10.0
SERVICE_MAX_ATTEMPTS = 3

# --- benchmarks --------------------------------------------------------------------------------
#: A benchmark's wait for a job spaces its polls by this fraction of the time waited so far: its
#: figures are known to 0.2 %, and stock RQ's 13.5-minute waits poll a few times a second.
BENCH_POLL_RESOLUTION = 0.002
#: `bench all` measures the overhead once each stock-RQ trial beside it polls at most this often
#: (100 s after their faults): the six trials' polls, 50 a second each at first, are a load that
#: fades during the first runs, which ABBA order does not cancel (it cancels a steady drift).
BENCH_QUIET_POLL_RATE = 5.0

# --- checkers ----------------------------------------------------------------------------------
#: SHAP additivity tolerance: |base + sum(shap) - prediction| <= rtol * max(1, |prediction|).
ADDITIVITY_RTOL = 1e-6
#: How each job kind must end; a kind left out is not judged (a memory-hungry job may go either way).
EXPECTED_ENDING = {"light": "finished", "heavy": "finished", "slow": "finished", "hang": "failed"}
#: The models the harness can predict with itself, by the name a request gives: the same data and
#: estimator as the service is meant to serve, trained by the harness (the oracle result-correct
#: ties each SHAP result's predictions to). (dataset loader of sklearn.datasets, estimator params)
ORACLE_MODELS = {
    "diabetes": ("load_diabetes", {"n_estimators": 200, "max_depth": 3, "learning_rate": 0.05, "random_state": 0}),
}
#: |result prediction - oracle prediction| <= rtol * max(1, |oracle|).
ORACLE_RTOL = 1e-9
#: Faults that freeze a worker until the final phase: its execution resumes then as a zombie.
ZOMBIE_FAULTS = ("pause-worker",)
#: After the heal, how long the runner waits for every zombie execution to end (the witness sees
#: it), so that fencing is exercised before the final read.
ZOMBIE_WAIT_S = 15.0
#: Kinds whose own code is the fault (they hang, or eat memory): retried by design, so their
#: re-executions are not judged.
SELF_FAULTING_KINDS = ("hang", "hungry")

#: Availability: a fault that heals only in the final phase (a kill, a held worker) counts as
#: "during" for this many seconds after it struck (a restart's worth), not for the rest of the run.
AVAILABILITY_WINDOW_S = 3.0
#: A scenario's availability bounds: the share of submission attempts accepted outside fault
#: windows, and during them. A fault on a worker leaves the submission path alone (0.9 during);
#: scenarios whose faults hit it (an API crash, a Redis restart) set their own during bound.
AVAILABILITY_OUTSIDE = 0.95
AVAILABILITY_DURING = 0.9
#: The during bound of a scenario whose faults take the submission path down.
AVAILABILITY_DURING_OUTAGE = 0.0

# --- scenarios and runs ------------------------------------------------------------------------
#: A scenario's defaults: workers, when the workload stops, the pause between heal and final read.
SCENARIO_WORKERS = 2
SCENARIO_DEADLINE_S = 25.0
SCENARIO_SETTLE_S = 2.0
#: A random schedule (nemesis): first fault at START_S, then one every EVERY_S (uniform).
NEMESIS_START_S = 2.0
NEMESIS_EVERY_S = (3.0, 5.0)
#: The default soak's size: jobs, minutes of submitting, then seconds for what is in flight.
SOAK_JOBS = 5000
SOAK_MINUTES = 30.0
SOAK_DRAIN_S = 120.0
#: How the soak profile scales a scenario that has no soak workload.
SOAK_JOB_SCALE = 10.0
SOAK_DEADLINE_SCALE = 8.0
#: The external repair command (a cron job beside stock RQ): how often it runs, how long it may take.
REPAIR_EVERY_S = 2.0
REPAIR_TIMEOUT_S = 30.0
#: How long `diagnose-worker --json` may take at the deadline.
DIAGNOSE_TIMEOUT_S = 30.0
#: The file it is captured in, in <report-dir>/<scenario>/ (the report reads it from there).
#: Beyond the deadline: how long the clients get to wind down, the nemesis thread to end.
CLIENT_GRACE_S = 15.0
NEMESIS_JOIN_S = 30.0

# --- a run directory (<report-dir>/, one folder per scenario) ----------------------------------
SUMMARY_FILE = "summary.json"
REPORT_FILE = "index.html"
ENV_FILE = "env.json"
#: Per scenario: its history, and `diagnose-worker --json` captured when jobs were stuck.
HISTORY_FILE = "history.jsonl"
DIAGNOSE_FILE = "diagnose.json"
