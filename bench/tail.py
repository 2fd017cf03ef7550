"""Issue 19's tail experiments: what makes our p99, measured per request inside the workers.

Seeds a small database (bench/run.py's pieces), starts one gunicorn per variant at the same time
(the production config, `gunicorn.conf.py` with ENVIRONMENT=production and rate limits on Redis
when a Redis URL is given, plus one variant setting each), and drives them with wrk in A/B
interleaved short runs: every round runs every variant once at every connection count, so each
variant sees the same stretches of a noisy machine; each figure is the median over rounds.

Inside every worker an instrumented copy of the config (written to the work directory: it
imports the production settings and hooks, then wraps them) records, per request: the wait
between gthread's main loop handing the connection to the thread pool and a pool thread
starting on it (thread-pool queue + GIL), the time in the thread (parse, app, write), and every
garbage collection (generation, duration, via `gc.callbacks`), worker boots (`max_requests`
recycling) and which client connections each worker holds. They are written at worker exit and
cut into each wrk run's time window. Those counts and in-worker times say *why* a p99 is what
it is; the wrk percentiles say what a client sees.

    python bench/tail.py                       # all variants, -c16 and -c4, 3 rounds of 6 s
    python bench/tail.py --variants stock,freeze --connections 16 --rounds 5
    python bench/tail.py --list                # the variants
    python bench/tail.py --gc-only             # in-process: collections and pauses per request

Needs wrk (apt-get install wrk) and a PostgreSQL superuser URL (BENCH_DATABASE_URL /
TEST_DATABASE_URL, else the embedded one); rate limits on, as in production, on a redis-server it
starts (redis-server on PATH) or --redis-url; --no-limits turns them off. About 2 s x variants x
connection counts x (rounds x scenarios) of wrk plus ~1 min of setup. Run it on a quiet machine:
the in-worker counts hold on a busy one, the latencies do not.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import run as bench  # noqa: E402  (bench/run.py: database, seed, servers, scenarios, wrk)

# name -> (description, environment overrides, in-worker overrides applied after the config's own hooks).
# In-worker overrides: "freeze" True/False (gc.freeze() / gc.unfreeze() after the worker's init),
# "switch_interval" seconds (sys.setswitchinterval), "threshold" (gc.set_threshold), "settings"
# (gunicorn settings set in the config module, e.g. reuse_port).
# "stock" is the production config with every process-level setting of issue 19 undone: the baseline.
_STOCK_ENV = {"GUNICORN_MAX_REQUESTS": "10000"}
_STOCK = {"freeze": False, "switch_interval": 0.005, "threshold": (700, 10, 10),
          "settings": {"reuse_port": False}}


def _stock(env=None, settings=None, **worker):
    settings = {**_STOCK["settings"], **(settings or {})}
    return {**_STOCK_ENV, **(env or {})}, {**_STOCK, **worker, "settings": settings}


VARIANTS = {
    "prod": ("gunicorn.conf.py as committed", {}, {}),
    "stock": ("production settings without issue 19's process-level ones (no gc.freeze, switch interval "
              "5 ms, gc thresholds 700/10/10, max_requests 10000, no reuse_port)", *_stock()),
    "freeze": ("stock + gc.freeze() after the worker's init", *_stock(freeze=True)),
    "norecycle": ("stock, max_requests 0 (no worker recycling)", *_stock({"GUNICORN_MAX_REQUESTS": "0"})),
    "switch1ms": ("stock + sys.setswitchinterval(0.001)", *_stock(switch_interval=0.001)),
    "threads2": ("stock with 2 threads per worker", *_stock({"GUNICORN_THREADS": "2"})),
    "reuseport": ("stock + reuse_port (a listening socket per worker: the kernel spreads connections) "
                  "and max_requests 0", *_stock({"GUNICORN_MAX_REQUESTS": "0"}, {"reuse_port": True})),
    # Worker recycling every ~500 requests, to count what a recycle costs clients (errors, boots):
    "recycle500": ("stock, max_requests 500 (jitter 50)",
                   *_stock({"GUNICORN_MAX_REQUESTS": "500", "GUNICORN_MAX_REQUESTS_JITTER": "50"})),
    "recycle2000": ("stock, max_requests 2000 (jitter 50)",
                    *_stock({"GUNICORN_MAX_REQUESTS": "2000", "GUNICORN_MAX_REQUESTS_JITTER": "50"})),
    "reuseport_recycle500": ("reuseport, max_requests 500 (jitter 50)",
                             *_stock({"GUNICORN_MAX_REQUESTS": "500", "GUNICORN_MAX_REQUESTS_JITTER": "50"},
                                     {"reuse_port": True})),
    "keepalive0": ("stock, keepalive 0: a connection per request, accepted by whichever worker is free "
                   "(what the peer's sync workers do)", *_stock({"GUNICORN_KEEPALIVE": "0"})),
    "nolimits": ("gunicorn.conf.py as committed, rate limits off (RATE_LIMIT_ENABLED=false)",
                 {"RATE_LIMIT_ENABLED": "false"}, {}),
    "workers4": ("stock with 4 workers x 2 threads",
                 *_stock({"WEB_CONCURRENCY": "4", "GUNICORN_THREADS": "2"})),
    # Issue 26 item 13: the uneven keep-alive split, against the committed config (warm pools).
    "prod_rp": ("gunicorn.conf.py as committed + reuse_port", {}, {"settings": {"reuse_port": True}}),
    "prod_wc8": ("gunicorn.conf.py as committed + worker_connections 8 (a worker holding 8 connections "
                 "stops accepting)", {}, {"settings": {"worker_connections": 8}}),
    "prod_r500": ("gunicorn.conf.py as committed, max_requests 500 (jitter 50)",
                  {"GUNICORN_MAX_REQUESTS": "500", "GUNICORN_MAX_REQUESTS_JITTER": "50"}, {}),
    "prod_rp500": ("gunicorn.conf.py as committed + reuse_port, max_requests 500 (jitter 50)",
                   {"GUNICORN_MAX_REQUESTS": "500", "GUNICORN_MAX_REQUESTS_JITTER": "50"},
                   {"settings": {"reuse_port": True}}),
}
DEFAULT_VARIANTS = "stock,prod,freeze,norecycle,switch1ms"

# The instrumented config: the production module's settings and hooks, wrapped. Written to the
# work directory and given to gunicorn with -c; TAIL_VARIANT (JSON) and TAIL_OUT come from the env.
INSTRUMENTED_CONFIG = '''
import gc
import json
import os
import sys
import threading
import time

from notifications_api.ops.gunicorn_conf import *  # noqa: F401,F403
from notifications_api.ops import gunicorn_conf as _base

_VARIANT = json.loads(os.environ["TAIL_VARIANT"])
_OUT = os.environ["TAIL_OUT"]
globals().update(_VARIANT.get("settings", {}))  # gunicorn settings of the variant (e.g. reuse_port)
_records = {"requests": [], "gc": [], "limiter": [], "boot": None, "clients": {}}
_lock = threading.Lock()


def post_fork(server, worker):
    getattr(_base, "post_fork", lambda *a: None)(server, worker)
    _records["forked"] = time.time()


def post_worker_init(worker):
    _base.post_worker_init(worker)
    if _VARIANT.get("freeze") is False:
        gc.unfreeze()
    elif _VARIANT.get("freeze") is True and not gc.get_freeze_count():
        gc.collect()
        gc.freeze()
    if _VARIANT.get("switch_interval"):
        sys.setswitchinterval(_VARIANT["switch_interval"])
    if _VARIANT.get("threshold"):
        gc.set_threshold(*_VARIANT["threshold"])
    _records["boot"] = {"forked": _records.get("forked"), "ready": time.time(),
                        "frozen": gc.get_freeze_count(), "switch_interval": sys.getswitchinterval(),
                        "threshold": gc.get_threshold(), "tracked": len(gc.get_objects())}
    started = {}

    def on_gc(phase, info):
        if phase == "start":
            started["t"] = time.perf_counter()
        elif "t" in started:
            _records["gc"].append((time.time(), info["generation"], time.perf_counter() - started.pop("t")))
    gc.callbacks.append(on_gc)

    enqueue, handle = worker.enqueue_req, worker.handle

    def timed_enqueue(conn):
        conn.tail_enqueued = time.perf_counter()
        enqueue(conn)

    def timed_handle(conn):
        begun = time.perf_counter()
        try:
            return handle(conn)
        finally:
            done = time.perf_counter()
            _records["requests"].append((time.time(), begun - getattr(conn, "tail_enqueued", begun),
                                         done - begun, "%s:%s" % tuple(conn.client[:2])))
    worker.enqueue_req, worker.handle = timed_enqueue, timed_handle
    _time_limiter()


def _time_limiter():
    """The rate limiter's Redis hit, timed per request (with limits on): its share of the service time."""
    from notifications_api.web import ratelimit
    incr = ratelimit.FailoverFixedWindow._incr

    def timed_incr(self, *args, **kwargs):
        begun = time.perf_counter()
        try:
            return incr(self, *args, **kwargs)
        finally:
            _records["limiter"].append((time.time(), time.perf_counter() - begun))
    ratelimit.FailoverFixedWindow._incr = timed_incr


def worker_exit(server, worker):
    database = _base._database(worker)
    if database is not None:
        _records["pool"] = database.pool.get_stats()
    _base.worker_exit(server, worker)
    _records["exited"] = time.time()
    with open(os.path.join(_OUT, "%d.json" % os.getpid()), "w") as f:
        json.dump(_records, f)
'''


def say(message: str) -> None:
    print(message, flush=True)


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def wrk_run(scenario, url: str, connections: int, duration: int, work: Path) -> dict:
    """One wrk run with --latency's percentiles up to p99.9 (bench/scenario.lua plus a done())."""
    data = work / f"{scenario.name}.lua"
    if not data.exists():
        data.write_text("return " + bench.lua_literal([list(r) for r in scenario.requests]) + "\n")
    script = work / "tail.lua"
    if not script.exists():
        script.write_text(f'dofile("{BENCH / "scenario.lua"}")\n' + """
function done(summary, latency, _)
  local e = summary.errors
  local file = assert(io.open(os.getenv("BENCH_RESULT"), "w"))
  file:write(string.format('{"requests": %d, "duration_us": %d, "errors": %d, "p50": %d, "p90": %d, ' ..
    '"p99": %d, "p999": %d, "max": %d, "mean": %.1f}', summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean))
  file:close()
end
""")
    result = work / "result.json"
    result.unlink(missing_ok=True)
    threads = min(2, connections)
    env = {**os.environ, "BENCH_DATA": str(data), "BENCH_RESULT": str(result), "BENCH_THREADS": str(threads)}
    started = time.time()
    completed = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s",
                                "--timeout", "5s",
                                "-s", str(script), url], env=env, capture_output=True, text=True)
    ended = time.time()
    if completed.returncode != 0 or not result.exists():
        raise SystemExit(f"wrk failed:\n{completed.stdout}\n{completed.stderr}")
    raw = json.loads(result.read_text())
    return {"start": started, "end": ended, "rps": raw["requests"] / (raw["duration_us"] / 1e6),
            "errors": raw["errors"],
            **{k: raw[k] / 1000 for k in ("p50", "p90", "p99", "p999", "max", "mean")}}


def worker_pids(master_pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()]
    except OSError:
        return []


def context_switches(pids: list[int]) -> dict[int, dict[str, int]]:
    """Per process: voluntary (blocked: GIL, socket, database, locks) and involuntary (preempted by
    the kernel) context switches summed over its threads."""
    out = {}
    for pid in pids:
        total = out[pid] = {"voluntary": 0, "involuntary": 0}
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                for line in (task / "status").read_text().splitlines():
                    if line.startswith("voluntary_ctxt_switches"):
                        total["voluntary"] += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches"):
                        total["involuntary"] += int(line.split()[1])
            except OSError:
                pass
    return out


def switches_delta(before: dict, after: dict, kind: str) -> int:
    """Summed over the workers alive at both ends of the run (a recycled worker's count is lost)."""
    return sum(after[pid][kind] - before[pid][kind] for pid in before
               if pid in after and after[pid][kind] >= before[pid][kind])


def redis_calls(url: str | None) -> dict[str, int] | None:
    """Calls per command so far (INFO commandstats): EVALSHA is one round trip of the limiter; the
    commands its script runs inside Redis (INCRBY, PTTL, ...) are listed too, and cost no round trip."""
    if not url:
        return None
    import redis
    client = redis.Redis.from_url(url)
    try:
        return {name.removeprefix("cmdstat_"): value["calls"]
                for name, value in client.info("commandstats").items()}
    finally:
        client.close()


def start_redis(work: Path) -> tuple[subprocess.Popen, str]:
    """A redis-server of our own (no persistence), so every command it counts is the limiter's."""
    from ratelimit_stock import start_redis as start  # bench/ratelimit_stock.py
    process, port = start(str(work))
    return process, f"redis://127.0.0.1:{port}/0"


def in_worker(records: list[dict], start: float, end: float) -> dict:
    """What the workers recorded inside one wrk run's window."""
    waits, service, gcs, clients, served, limiter = [], [], {0: [], 1: [], 2: []}, [], [], []
    boots = 0
    for worker in records:
        mine, count = set(), 0
        for t, wait, took, client in worker["requests"]:
            if start <= t <= end:
                waits.append(wait * 1000)
                service.append(took * 1000)
                mine.add(client)
                count += 1
        if count:
            served.append(count)
        limiter.extend(took * 1000 for t, took in worker.get("limiter", ()) if start <= t <= end)
        for t, generation, took in worker["gc"]:
            if start <= t <= end:
                gcs[generation].append(took * 1000)
        if mine:
            clients.append(len(mine))
        forked = (worker.get("boot") or {}).get("forked") or 0
        if start <= forked <= end:
            boots += 1
    n = len(service) or 1
    out = {"requests": len(service), "boots": boots,
           "conns_per_worker": sorted(clients, reverse=True),
           "busiest_worker_share": max(served) / sum(served) if served else None,
           "wait_p50": percentile(waits, 50), "wait_p99": percentile(waits, 99),
           "service_p50": percentile(service, 50), "service_p99": percentile(service, 99),
           "service_p999": percentile(service, 99.9),
           "limiter_p50": percentile(limiter, 50), "limiter_p99": percentile(limiter, 99)}
    for generation, pauses in gcs.items():
        out[f"gen{generation}_per_1k"] = 1000 * len(pauses) / n
        out[f"gen{generation}_max_ms"] = max(pauses) if pauses else 0.0
    out["gc_ms_per_1k"] = 1000 * sum(sum(p) for p in gcs.values()) / n
    return out


def gc_only(args) -> int:
    """In-process (bench/instructions.py's app and canned rows): collections per request and pauses,
    each (scenario, freeze) in a fresh interpreter."""
    for scenario in ("unread", "list_first"):
        for freeze in ("no", "yes"):
            subprocess.run([sys.executable, __file__, "--gc-child", scenario, "--gc-freeze", freeze,
                            "--requests", str(args.requests)], check=True)
    return 0


def gc_child(scenario: str, freeze: bool, requests: int) -> None:
    import gc

    sys.argv = [sys.argv[0]]
    import instructions

    serve = _in_process_app(instructions, scenario)  # the request log goes to /dev/null from here
    if freeze:  # as gunicorn_conf.freeze_gc does; without it, the state a stock worker starts in
        gc.collect()
        gc.freeze()
    tracked = len(gc.get_objects()) + gc.get_freeze_count()
    pauses = {0: [], 1: [], 2: []}
    started = {}

    def on_gc(phase, info):
        if phase == "start":
            started["t"] = time.perf_counter()
        else:
            pauses[info["generation"]].append(time.perf_counter() - started.pop("t"))
    gc.callbacks.append(on_gc)
    begun = time.perf_counter()
    for _ in range(requests):
        serve()
    elapsed = time.perf_counter() - begun
    gc.callbacks.remove(on_gc)
    parts = [f"gen{g} {1000 * len(v) / requests:5.2f}/1k req, max {max(v) * 1000 if v else 0:6.2f} ms"
             for g, v in pauses.items()]
    print(f"{scenario:<10} freeze={'yes' if freeze else 'no ':<3} objects {tracked:>6} "
          f"(frozen {gc.get_freeze_count():>6})  " + "; ".join(parts)
          + f"  ({elapsed / requests * 1e6:.0f} µs/req)", file=sys.__stderr__, flush=True)


def _in_process_app(instructions, scenario: str):
    """instructions.child()'s app, returned as a serve() callable instead of served N times."""
    source = Path(instructions.__file__).read_text()
    marker = "    for _ in range(requests):\n        serve()"
    if marker not in source:
        raise SystemExit("bench/instructions.py changed: update tail.py's _in_process_app")
    namespace = {"__name__": "tail_instructions", "__file__": instructions.__file__}
    exec(compile(source.replace(marker, "    return serve"), instructions.__file__, "exec"), namespace)
    return namespace["child"](scenario, 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default=DEFAULT_VARIANTS,
                        help=f"comma-separated (default {DEFAULT_VARIANTS})")
    parser.add_argument("--connections", default="16,4")
    parser.add_argument("--scenarios", default="unread_typical,list_first")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=6, help="seconds per wrk run (default 6)")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--per-user", type=int, default=100)
    parser.add_argument("--redis-url", default=os.environ.get("TAIL_REDIS_URL"),
                        help="rate limits on this Redis (default: a redis-server of its own, so the "
                             "command counts are the limiter's alone)")
    parser.add_argument("--no-limits", action="store_true", help="rate limits off (make bench's default)")
    parser.add_argument("--json", type=Path, default=bench.ROOT / ".data" / "bench" / "tail.json")
    parser.add_argument("--list", action="store_true", help="list the variants and exit")
    parser.add_argument("--gc-only", action="store_true", help="in-process GC counts only (no database)")
    parser.add_argument("--requests", type=int, default=20000, help="--gc-only: requests per scenario")
    parser.add_argument("--gc-child", help=argparse.SUPPRESS)
    parser.add_argument("--gc-freeze", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.gc_child:
        gc_child(args.gc_child, args.gc_freeze == "yes", args.requests)
        return 0
    if args.list:
        for name, (description, env, _) in VARIANTS.items():
            say(f"{name:<10} {description}")
        return 0
    if args.gc_only:
        return gc_only(args)
    bench.require_wrk()
    variants = args.variants.split(",")
    connections = [int(c) for c in args.connections.split(",")]
    work = Path(tempfile.mkdtemp(prefix="notifications-tail-"))
    config = work / "tail_gunicorn_conf.py"
    config.write_text(INSTRUMENTED_CONFIG)
    servers, db, redis_server = {}, None, None
    report = {"machine": bench.machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "duration_s": args.duration, "rounds": args.rounds,
              "rate_limits": "off" if args.no_limits else "on, Redis"}
    try:
        if args.no_limits:
            args.redis_url = None
        elif not args.redis_url:
            redis_server, args.redis_url = start_redis(work)
        db = bench.open_database(args)
        say(f"seeding {args.users} users x {args.per_user} ...")
        report["seed"] = bench.seed(db, args.users, args.per_user, 1000)
        keys = {"jwt": secrets.token_urlsafe(48), "service": secrets.token_urlsafe(48),
                "metrics": secrets.token_urlsafe(48)}
        # make bench's limits (layers.BENCH_LIMIT: never met, every hit still a round trip)
        limits = bench.layers.layer_env(set(), args.redis_url)
        for name in variants:
            description, env_overrides, in_worker_overrides = VARIANTS[name]
            out = work / name
            out.mkdir()
            port = bench.free_port()
            env = bench.server_env(db, port, keys, {**limits, **env_overrides})
            env.update({"TAIL_VARIANT": json.dumps(in_worker_overrides), "TAIL_OUT": str(out)})
            servers[name] = (_start(config, env, port, work), out)
            say(f"variant {name}: {description} on :{port}")
        typical = [bench.user_id(n) for n in range(1, args.users + 1)]
        first = next(iter(servers.values()))[0]
        prep = bench.Preparer(first.url, "/api/v1", keys["jwt"], keys["service"], typical,
                              bench.HEAVY_USER, [])
        for server, _ in servers.values():
            bench.warm(server.url, "/api/v1/notifications/unread/count", prep.auth(bench.HEAVY_USER))
        wanted = args.scenarios.split(",")
        scenarios = [s for s in prep.build() if s.name in wanted]
        runs = []
        for number in range(1, args.rounds + 1):
            for scenario in scenarios:
                for conns in connections:
                    for name in (variants if number % 2 else variants[::-1]):  # alternate the order
                        server = servers[name][0]
                        if number == 1:
                            wrk_run(scenario, server.url, conns, 2, work)  # warm-up
                        pids = worker_pids(server.process.pid)
                        switches, commands = context_switches(pids), redis_calls(args.redis_url)
                        r = wrk_run(scenario, server.url, conns, args.duration, work)
                        after = context_switches(worker_pids(server.process.pid))
                        commands_after = redis_calls(args.redis_url)
                        r["ctx_vol"] = switches_delta(switches, after, "voluntary")
                        r["ctx_invol"] = switches_delta(switches, after, "involuntary")
                        if commands is not None:
                            r["redis_calls"] = {name: calls - commands.get(name, 0)
                                                for name, calls in commands_after.items()
                                                if name != "info" and calls - commands.get(name, 0)}
                        r.update(variant=name, scenario=scenario.name, connections=conns, round=number)
                        runs.append(r)
                        say(f"  round {number} {scenario.name:<15} -c{conns:<3} {name:<10} "
                            f"{r['rps']:7.0f} req/s p50 {r['p50']:6.2f} p99 {r['p99']:6.2f} "
                            f"p99.9 {r['p999']:6.2f} max {r['max']:7.2f} ms")
    finally:
        for server, _ in servers.values():
            bench.stop_server(server)
        if db is not None:
            bench.drop_database(db)
        if redis_server is not None:
            redis_server.terminate()
            redis_server.wait()
    records = {name: [json.loads(p.read_text()) for p in out.glob("*.json")]
               for name, (_, out) in servers.items()}
    for r in runs:
        r.update(in_worker(records[r["variant"]], r["start"], r["end"]))
        served = r["requests"] or 1  # as the workers counted them, in the run's window
        r["ctx_vol_per_req"], r["ctx_invol_per_req"] = r["ctx_vol"] / served, r["ctx_invol"] / served
        if "redis_calls" in r:
            r["redis_per_req"] = r["redis_calls"].get("evalsha", 0) / served
    report["variants"] = {name: VARIANTS[name][0] for name in variants}
    report["pool"] = {name: [w.get("pool") for w in workers] for name, workers in records.items()}
    report["boot"] = {name: [w["boot"] for w in workers if w.get("boot")][:2]
                      for name, workers in records.items()}
    report["runs"] = runs
    report["summary"] = summarize(runs)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1, default=str))
    shutil.rmtree(work, ignore_errors=True)
    say(f"\nJSON: {args.json}")
    return 0


COLUMNS = [("rps", "req/s", "{:.0f}"), ("p50", "p50", "{:.2f}"), ("p99", "p99", "{:.2f}"),
           ("p999", "p99.9", "{:.2f}"), ("max", "max", "{:.1f}"), ("wait_p99", "wait p99", "{:.2f}"),
           ("service_p50", "svc p50", "{:.2f}"), ("service_p99", "svc p99", "{:.2f}"),
           ("limiter_p50", "lim p50", "{:.2f}"), ("limiter_p99", "lim p99", "{:.2f}"),
           ("gen2_per_1k", "gen2/1k", "{:.2f}"), ("gen2_max_ms", "gen2 max", "{:.1f}"),
           ("gc_ms_per_1k", "gc ms/1k", "{:.1f}"), ("boots", "boots", "{:.0f}"),
           ("ctx_vol_per_req", "vol cs/req", "{:.1f}"), ("ctx_invol_per_req", "invol/req", "{:.2f}"),
           ("redis_per_req", "evalsha/req", "{:.2f}"), ("busiest_worker_share", "busiest", "{:.2f}")]


def summarize(runs: list[dict]) -> list[dict]:
    """Median over rounds per (scenario, connections, variant); printed as a table."""
    rows = []
    keys = sorted({(r["scenario"], r["connections"], r["variant"]) for r in runs},
                  key=lambda k: (k[0], -k[1]))
    say("\nmedian over rounds (ms; wait = thread-pool queue + GIL before a thread starts on the request, "
        "svc = time in the thread)")
    say(f"{'scenario':<15}{'conns':>6} {'variant':<10}" + "".join(f"{title:>10}" for _, title, _ in COLUMNS)
        + "  conns/worker")
    for scenario, conns, variant in keys:
        mine = [r for r in runs
                if (r["scenario"], r["connections"], r["variant"]) == (scenario, conns, variant)]
        row = {"scenario": scenario, "connections": conns, "variant": variant, "rounds": len(mine)}
        for key, _, _ in COLUMNS:
            values = [r[key] for r in mine if r.get(key) is not None]
            row[key] = statistics.median(values) if values else None
        row["conns_per_worker"] = [r["conns_per_worker"] for r in mine]
        row["errors"] = sum(r["errors"] for r in mine)
        rows.append(row)
        cells = "".join(f"{(fmt.format(row[key]) if row[key] is not None else '-'):>10}"
                        for key, _, fmt in COLUMNS)
        say(f"{scenario:<15}{conns:>6} {variant:<10}{cells}  {row['conns_per_worker']}")
    return rows


def _start(config: Path, env: dict, port: int, work: Path):
    """bench.start_server with the instrumented config instead of gunicorn.conf.py."""
    log_path = work / f"gunicorn-{port}.log"
    command = [sys.executable, "-m", "gunicorn", "-c", str(config), "notifications_api.wsgi:app"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, env=env, cwd=bench.ROOT, stdout=subprocess.DEVNULL, stderr=log,
                                   start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    import socket
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"gunicorn exited ({process.returncode}):\n{log_path.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.1)
    return bench.Server(process, url, log_path)


if __name__ == "__main__":
    sys.exit(main())
