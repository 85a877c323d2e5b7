#!/usr/bin/env python3
"""Fan-out side by side: Netia against the Papercups-shaped peers of ../shared/bench, in one run.

Starts a release `netia serve` on PostgreSQL, the durable peer (inserts each message into
PostgreSQL, then broadcasts: Papercups' order) and the in-memory peer, then runs the shared
harness (`fanout.js`: N agent sockets on one conversation topic, one customer shouting RATE
messages/s for SECS seconds) against each target in turn, alternating, ROUNDS times per shape.
Prints one JSON line per run, then per shape the medians and the ratios the performance issue
asks for (Netia p50 / durable peer p50, Netia p99 / in-memory peer p99).

    cargo build --release
    python3 benches/side_by_side.py                 # shapes 1000x50 and 2000x50, 3 rounds
    SHAPES=1000x50 ROUNDS=1 SECS=5 python3 benches/side_by_side.py

Each run also records the processor time its server used (`server_cpu_s`: user + system seconds
of the server's process) and PostgreSQL's backends for its database used (`pg_cpu_s`) while the
harness ran: less noisy than latency on a busy machine, and the cost of persisting side by side.
It also records the TCP segments the machine sent per delivered frame while the customer shouted
(`segments_per_delivery`, from /proc/net/snmp; the harness copy writes a line to stderr when it
starts shouting): over loopback that is each frame plus the harness's ACKs. How often the harness
ACKs depends on its sockets' delayed-ACK state, not on the server's bytes, and every ACK costs the
harness's single thread the kernel's work on both ends (docs/adr/0004-real-time.md); so it also
records the processor seconds the harness itself used over the same span (`harness_cpu_s`).

Environment: SHARED_BENCH (default ../shared/bench beside the checkout), NETIA_BIN (default
target/release/netia), NETIA_BASE_BIN (another build, run as the target `netia-base` on a database
of its own and compared with: two builds alternated in one run), PG_URL (default
postgres://postgres@127.0.0.1:5432), SHAPES, ROUNDS, SECS, PAD (message padding, bytes). Everything
it starts is stopped at the end; the databases `netia_side_by_side`, `netia_side_by_side_base` and
`peer_side_by_side` are dropped and created again on each run.
"""

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def env(name, default):
    return os.environ.get(name, default)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # answering, whatever the status
        except OSError:
            time.sleep(0.2)
    sys.exit(f"nothing answered at {url} within {seconds} s")


def wait_port(port, seconds=30):
    deadline = time.time() + seconds
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    sys.exit(f"nothing listens on port {port} after {seconds} s")


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """User + system seconds process `pid` (all its threads) has used; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    except (OSError, IndexError, ValueError):
        return 0.0


def backends_of(database):
    """The PostgreSQL backends connected to `database` (their process titles name it)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                title = f.read().decode(errors="replace")
        except OSError:
            continue
        if title.startswith("postgres:") and f" {database} " in title:
            pids.append(int(entry))
    return pids


def cpu_of(pid, database):
    """Processor seconds used so far by the server `pid` and by `database`'s backends (none when
    `database` is None)."""
    backends = backends_of(database) if database else []
    return cpu_seconds(pid), {b: cpu_seconds(b) for b in backends}


def cpu_since(before, pid, database):
    server, backends = before
    now_server, now_backends = cpu_of(pid, database)
    pg = sum(t - backends.get(b, 0.0) for b, t in now_backends.items())
    return round(now_server - server, 2), round(pg, 2)


def tcp_out_segments():
    """The machine's TCP segments sent so far (/proc/net/snmp, Tcp OutSegs); None where unreadable."""
    try:
        with open("/proc/net/snmp") as snmp:
            rows = [line.split() for line in snmp if line.startswith("Tcp:")]
        return int(rows[1][rows[0].index("OutSegs")])
    except (OSError, IndexError, ValueError):
        return None


def recreate_db(pg, name):
    for sql in (f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"CREATE DATABASE {name}"):
        subprocess.run(["psql", f"{pg}/postgres", "-q", "-c", sql], check=True)


def main():
    shared = env("SHARED_BENCH", os.path.join(os.path.dirname(ROOT), "shared", "bench"))
    netia_bin = env("NETIA_BIN", os.path.join(ROOT, "target", "release", "netia"))
    pg = env("PG_URL", "postgres://postgres@127.0.0.1:5432")
    shapes = [tuple(int(x) for x in s.split("x")) for s in env("SHAPES", "1000x50,2000x50").split(",")]
    rounds, secs, pad = int(env("ROUNDS", "3")), env("SECS", "10"), env("PAD", "200")
    if not os.path.exists(os.path.join(shared, "fanout.js")):
        sys.exit(f"no fanout.js in {shared} (set SHARED_BENCH)")
    if not os.access(netia_bin, os.X_OK):
        sys.exit(f"no {netia_bin}: run `cargo build --release` first (or set NETIA_BIN)")

    # The shared directory may be read-only: install the harness's packages into a copy.
    work = tempfile.mkdtemp(prefix="netia-side-by-side-")
    for name in ("fanout.js", "peer_phoenix_server.js", "package.json"):
        shutil.copy(os.path.join(shared, name), work)
    mark_shouting(work)
    same_frames(work)
    subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=work, check=True)

    base_bin = os.environ.get("NETIA_BASE_BIN")
    if base_bin and not os.access(base_bin, os.X_OK):
        sys.exit(f"NETIA_BASE_BIN={base_bin} is not an executable")
    netias = [("netia", netia_bin, "netia_side_by_side")]
    if base_bin:
        netias.append(("netia-base", base_bin, "netia_side_by_side_base"))
    for _, _, database in netias:
        recreate_db(pg, database)
    recreate_db(pg, "peer_side_by_side")
    children = []
    quiet = subprocess.DEVNULL
    try:
        servers = {}  # target name -> (its process, its database)
        targets = []
        for name, binary, database in netias:
            port = free_port()
            netia_env = dict(
                os.environ,
                DATABASE_URL=f"{pg}/{database}",
                PORT=str(port),
                RUST_LOG="warn",
                RATE_LIMIT_IP_PER_MINUTE="1000000",
                RATE_LIMIT_SOCKETS_PER_MINUTE="1000000",
                RATE_LIMIT_FRAMES_PER_SECOND="1000000",
            )
            netia_env.pop("AMQP_URL", None)
            child = subprocess.Popen([binary, "serve"], env=netia_env, stdout=quiet, stderr=quiet)
            children.append(child)
            wait_http(f"http://127.0.0.1:{port}/health/ready")
            servers[name] = (child, database)
            targets.append((name, "fanout.js", [f"http://127.0.0.1:{port}"]))
        durable_port, memory_port = free_port(), free_port()
        peer = os.path.join(work, "peer_phoenix_server.js")
        durable_env = dict(os.environ, PORT=str(durable_port), QUIET="1", DATABASE_URL=f"{pg}/peer_side_by_side")
        durable_peer = subprocess.Popen(["node", peer], env=durable_env, cwd=work, stdout=quiet)
        children.append(durable_peer)
        memory_env = dict(os.environ, PORT=str(memory_port), QUIET="1")
        memory_env.pop("DATABASE_URL", None)
        memory_peer = subprocess.Popen(["node", peer], env=memory_env, cwd=work, stdout=quiet)
        children.append(memory_peer)
        wait_port(durable_port)
        wait_port(memory_port)
        for name in ("durable-peer", "durable-peer-same-frames"):
            servers[name] = (durable_peer, "peer_side_by_side")
        for name in ("memory-peer", "memory-peer-same-frames"):
            servers[name] = (memory_peer, None)  # no database: its PostgreSQL time is 0

        durable, memory = f"ws://127.0.0.1:{durable_port}/socket", f"ws://127.0.0.1:{memory_port}/socket"
        targets += [
            ("durable-peer", "fanout.js", ["x", durable]),
            ("memory-peer", "fanout.js", ["x", memory]),
            ("durable-peer-same-frames", "fanout_same_frames.js", ["x", durable]),
            ("memory-peer-same-frames", "fanout_same_frames.js", ["x", memory]),
        ]
        results = {}
        for clients, rate in shapes:
            for round_no in range(1, rounds + 1):
                # Alternate the order each round, so no target always runs on a warmer machine.
                order = targets if round_no % 2 else list(reversed(targets))
                for name, script, args in order:
                    head, tail = args[:1], args[1:]
                    cmd = ["node", script, *head, str(clients), str(rate), secs, pad, *tail]
                    server, database = servers[name]
                    before = cpu_of(server.pid, database)
                    stdout, segments, harness_cpu = run_harness(cmd, work)
                    server_cpu, pg_cpu = cpu_since(before, server.pid, database)
                    line = (stdout.strip().splitlines() or ["ERR no output"])[-1]
                    record = {"shape": f"{clients}x{rate}", "round": round_no, "target": name, "result": line}
                    record.update(server_cpu_s=server_cpu, pg_cpu_s=pg_cpu, harness_cpu_s=harness_cpu)
                    if line.startswith("{"):
                        result = json.loads(line)
                        per = round(segments / result["delivered"], 2) if segments and result["delivered"] else None
                        record.update(segments_per_delivery=per)
                        result.update(server_cpu_s=server_cpu, pg_cpu_s=pg_cpu, harness_cpu_s=harness_cpu)
                        result.update(segments_per_delivery=per)
                        results.setdefault((clients, rate, name), []).append(result)
                    print(json.dumps(record))
                    sys.stdout.flush()
                    time.sleep(2)
        summarize(shapes, results)
    finally:
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        shutil.rmtree(work, ignore_errors=True)


# A message as Netia broadcasts it (`MessageView`), key for key in Netia's order and of its length
# (the body's place kept by a placeholder that the shout's body overwrites; `sent_at` with Netia's
# microseconds): what the durable peer echoes in the "same frames" runs, so that the harness's
# single-threaded client parses frames of the same shape and size from every target. Only the
# topic, which the harness names, is shorter for the peers. Papercups' own `shout` carries a full
# message view too.
NETIA_SHAPED = (
    '{id: "01a231e5-2671-7696-9f67-785bd19c84ed", conversation_id: "01a231e5-2593-7260-94ab-38aefa85dd34", '
    'account_id: "01a231e5-2568-7343-8be0-13068f0bb6be", body: null, format: "text", type: "customer", '
    'private: false, source: "chat", customer_id: "01a231e5-258a-74ed-9f18-92c34dc1c22b", user_id: null, '
    'customer: {id: "01a231e5-258a-74ed-9f18-92c34dc1c22b"}, user: null, author_name: null, '
    'client_message_id: null, sent_at: new Date().toISOString().replace("Z", "000Z"), seen_at: null, '
    'delivery_status: "sent", version: 2, attachments: []}'
)


SHOUTING = "shouting"


def mark_shouting(work):
    """Makes the harness copy in `work` write a line to stderr when its customer starts shouting,
    so that what is counted over the shouting alone (the TCP segments) leaves the connecting and
    joining out; nothing else of it changes."""
    path = os.path.join(work, "fanout.js")
    source = open(path).read()
    start = "const t0 = now();"
    if source.count(start) != 1:
        sys.exit("fanout.js changed: cannot mark when it starts shouting")
    with open(path, "w") as out:
        out.write(source.replace(start, f'process.stderr.write("{SHOUTING}\\n"); {start}'))


def run_harness(cmd, work):
    """Runs one harness command (killed after 600 s). Returns its stdout, the TCP segments the
    machine sent from the harness's first shout to its exit, and the processor seconds the harness
    used over the same span (each None if the first shout was not seen)."""
    harness = subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = threading.Timer(600, harness.kill)
    deadline.start()
    segments = cpu = None
    for line in harness.stderr:
        if line.strip() == SHOUTING:
            segments, cpu = tcp_out_segments(), cpu_seconds(harness.pid)
            break
    # The rest of stderr is drained beside stdout, so that neither pipe can fill and stall it.
    rest = threading.Thread(target=harness.stderr.read)
    rest.start()
    stdout = harness.stdout.read()
    rest.join()
    harness.stdout.close()
    harness.stderr.close()
    # wait4 rather than wait: the exited harness's own processor time (all its threads).
    _, status, usage = os.wait4(harness.pid, 0)
    harness.returncode = os.waitstatus_to_exitcode(status)
    deadline.cancel()
    end = tcp_out_segments()
    if segments is not None and end is not None:
        segments = end - segments
    if cpu is not None:
        cpu = round(usage.ru_utime + usage.ru_stime - cpu, 2)
    return stdout, segments, cpu


def same_frames(work):
    """Writes fanout_same_frames.js: the shared harness whose customer sends the peer a shout shaped
    like Netia's broadcast (the peer broadcasts what it is sent; Netia builds its own frame)."""
    source = open(os.path.join(work, "fanout.js")).read()
    shout = "{ body: JSON.stringify({ seq: seq++, t: now(), pad }) }"
    if source.count(shout) != 1:
        sys.exit("fanout.js changed: cannot derive the same-frames variant")
    shaped = f"Object.assign({NETIA_SHAPED}, {shout})"
    with open(os.path.join(work, "fanout_same_frames.js"), "w") as out:
        out.write(source.replace(shout, shaped))


def summarize(shapes, results):
    names = (
        "netia",
        "netia-base",
        "durable-peer",
        "memory-peer",
        "durable-peer-same-frames",
        "memory-peer-same-frames",
    )
    print(
        f"\n{'shape':<9} {'target':<25} runs  delivered   {'p50 ms (each run)':<22} {'p99 ms (each run)':<22} "
        "CPU s: server / PostgreSQL / harness shouting, TCP segments / delivery (medians)"
    )
    for clients, rate in shapes:
        medians = {}
        for name in names:
            runs = results.get((clients, rate, name), [])
            if not runs:
                if name != "netia-base":  # a target only with NETIA_BASE_BIN
                    print(f"{clients}x{rate:<6} {name:<25} 0")
                continue
            p50 = [float(r["p50_ms"]) for r in runs]
            p99 = [float(r["p99_ms"]) for r in runs]
            share = sum(r["delivered"] for r in runs) / max(1, sum(r["expected"] for r in runs))
            server_cpu = statistics.median(r["server_cpu_s"] for r in runs)
            pg_cpu = statistics.median(r["pg_cpu_s"] for r in runs)
            per = [r["segments_per_delivery"] for r in runs if r.get("segments_per_delivery")]
            segments = f"{statistics.median(per):.2f}" if per else "n/a"
            harness = [r["harness_cpu_s"] for r in runs if r.get("harness_cpu_s") is not None]
            harness_cpu = f"{statistics.median(harness):.2f}" if harness else "n/a"
            medians[name] = (statistics.median(p50), statistics.median(p99), server_cpu, pg_cpu)
            print(
                f"{clients}x{rate:<6} {name:<25} {len(runs):<5} {share:>8.2%}   "
                f"{' / '.join(f'{v:.1f}' for v in p50):<22} {' / '.join(f'{v:.1f}' for v in p99):<22} "
                f"{server_cpu:.2f} / {pg_cpu:.2f} / {harness_cpu}, {segments}"
            )
        for peer, what, index in (
            ("netia-base", "p50", 0),
            ("netia-base", "p99", 1),
            ("netia-base", "server CPU", 2),
            ("netia-base", "PostgreSQL CPU", 3),
            ("durable-peer", "p50", 0),
            ("durable-peer-same-frames", "p50", 0),
            ("memory-peer", "p99", 1),
            ("memory-peer-same-frames", "p99", 1),
        ):
            if "netia" in medians and peer in medians and medians[peer][index] > 0:
                ratio = medians["netia"][index] / medians[peer][index]
                print(f"  median {what} netia / {peer}: {ratio:.2f}")


if __name__ == "__main__":
    main()
