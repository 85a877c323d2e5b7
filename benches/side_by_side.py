#!/usr/bin/env python3
"""Fan-out side by side: Netia against the Papercups-shaped peers of ../shared/bench, in one run.

Starts a release `netia serve` on PostgreSQL, the durable peer (inserts each message into
PostgreSQL, then broadcasts: Papercups' order) and the in-memory peer, then runs the shared
harness (`fanout.js`: N agent sockets on one conversation topic, one customer shouting RATE
messages/s for SECS seconds) against each target in turn, alternating, ROUNDS times per shape.
Prints one JSON line per run, then per shape the medians and the ratios the performance issue
asks for (Netia p50 / durable peer p50, Netia p99 / in-memory peer p99), plainly and settled.

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
records the processor seconds the harness itself used over the same span (`harness_cpu_s`), how
many of its sockets were in delayed-ACK interactive mode at the first shout
(`interactive_ack_sockets` of `harness_sockets`, from /proc/net/tcp), and the median over messages
of each message's first delivery (`first_p50_ms`: the server's path, before the harness's own
queue).

Every server is also run with the harness settled (`-settled` targets): the same client conditions
for all. The harness pauses twice before shouting so that none of its sockets is left in the
interactive mode, and the peers are sent frames of Netia's exact shape on a topic of Netia's length,
so that the harness parses the same bytes from every target (`settled_variants`).

Environment: SHARED_BENCH (default ../shared/bench beside the checkout), NETIA_BIN (default
target/release/netia), NETIA_BASE_BIN (another build, run as the targets `netia-base` and
`netia-base-settled` on a database of its own and compared with: two builds alternated in one
run), PG_URL (default postgres://postgres@127.0.0.1:5432), SHAPES, ROUNDS, SECS, PAD (message
padding, bytes). Everything
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


def interactive_sockets(port):
    """Of the established TCP sockets whose remote port is `port` (the harness's client sockets,
    its customer's included), how many are in delayed-ACK interactive mode ("pingpong": they
    acknowledge every second small segment, not each one) and how many there are in all: the last
    bit of the /proc/net/tcp field after `ato`, (quick << 1) | pingpong (net/ipv4/tcp_ipv4.c).
    (None, None) where unreadable."""
    remote = f":{port:04X}"
    pingpong = total = 0
    try:
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            if not os.path.exists(table):
                continue
            with open(table) as rows:
                next(rows)
                for row in rows:
                    fields = row.split()
                    if fields[2].endswith(remote) and fields[3] == "01":
                        total += 1
                        pingpong += int(fields[14]) & 1
    except (OSError, IndexError, ValueError):
        return None, None
    return pingpong, total


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
    settled_variants(work)
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
            targets.append((name, "fanout.js", [f"http://127.0.0.1:{port}"], port))
            targets.append((f"{name}-settled", "fanout_settled.js", [f"http://127.0.0.1:{port}"], port))
            servers[f"{name}-settled"] = servers[name]
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
        for name in ("durable-peer", "durable-peer-same-settled"):
            servers[name] = (durable_peer, "peer_side_by_side")
        for name in ("memory-peer", "memory-peer-same-settled"):
            servers[name] = (memory_peer, None)  # no database: its PostgreSQL time is 0

        durable, memory = f"ws://127.0.0.1:{durable_port}/socket", f"ws://127.0.0.1:{memory_port}/socket"
        targets += [
            ("durable-peer", "fanout.js", ["x", durable], durable_port),
            ("memory-peer", "fanout.js", ["x", memory], memory_port),
            ("durable-peer-same-settled", "fanout_same_settled.js", ["x", durable], durable_port),
            ("memory-peer-same-settled", "fanout_same_settled.js", ["x", memory], memory_port),
        ]
        results = {}
        for clients, rate in shapes:
            for round_no in range(1, rounds + 1):
                # Alternate the order each round, so no target always runs on a warmer machine.
                order = targets if round_no % 2 else list(reversed(targets))
                for name, script, args, port in order:
                    head, tail = args[:1], args[1:]
                    cmd = ["node", script, *head, str(clients), str(rate), secs, pad, *tail]
                    server, database = servers[name]
                    before = cpu_of(server.pid, database)
                    stdout, segments, harness_cpu, (pingpong, sockets) = run_harness(cmd, work, port)
                    server_cpu, pg_cpu = cpu_since(before, server.pid, database)
                    line = (stdout.strip().splitlines() or ["ERR no output"])[-1]
                    # What the script measured beside the harness: printed with the run, and kept
                    # with its result for the summary.
                    measured = dict(server_cpu_s=server_cpu, pg_cpu_s=pg_cpu, harness_cpu_s=harness_cpu)
                    measured.update(interactive_ack_sockets=pingpong, harness_sockets=sockets)
                    record = {"shape": f"{clients}x{rate}", "round": round_no, "target": name, "result": line}
                    if line.startswith("{"):
                        result = json.loads(line)
                        delivered = result["delivered"]
                        measured["segments_per_delivery"] = round(segments / delivered, 2) if segments and delivered else None
                        result.update(measured)
                        results.setdefault((clients, rate, name), []).append(result)
                    record.update(measured)
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
# microseconds): what the peers echo in the `-same-settled` runs (on a topic of Netia's length,
# NETIA_TOPIC), so that the harness's single-threaded client parses frames of the same shape and
# size from every target. Papercups' own `shout` carries a full message view too.
NETIA_SHAPED = (
    '{id: "01a231e5-2671-7696-9f67-785bd19c84ed", conversation_id: "01a231e5-2593-7260-94ab-38aefa85dd34", '
    'account_id: "01a231e5-2568-7343-8be0-13068f0bb6be", body: null, format: "text", type: "customer", '
    'private: false, source: "chat", customer_id: "01a231e5-258a-74ed-9f18-92c34dc1c22b", user_id: null, '
    'customer: {id: "01a231e5-258a-74ed-9f18-92c34dc1c22b"}, user: null, author_name: null, '
    'client_message_id: null, sent_at: new Date().toISOString().replace("Z", "000Z"), seen_at: null, '
    'delivery_status: "sent", version: 2, attachments: []}'
)


SHOUTING = "shouting"


def patch(source, old, new):
    if source.count(old) != 1:
        sys.exit(f"fanout.js changed: cannot find {old!r}")
    return source.replace(old, new)


def mark_shouting(work):
    """Makes the harness copy in `work` write a line to stderr when its customer starts shouting,
    so that what is counted over the shouting alone (TCP segments, processor time, ACK modes)
    leaves the connecting and joining out, and print each message's first delivery too
    (`first_p50_ms`: the median over messages of the earliest of its N deliveries, the server's
    path from shout to first frame without the harness's queue behind it)."""
    path = os.path.join(work, "fanout.js")
    source = open(path).read()
    source = patch(source, "const t0 = now();", f'process.stderr.write("{SHOUTING}\\n"); const t0 = now();')
    source = patch(source, "const lats = [];", "const firsts = []; const lats = [];")
    source = patch(
        source,
        "got++; lats.push(now() - p.t);",
        "got++; const late = now() - p.t; lats.push(late); if (!(late >= firsts[p.seq])) firsts[p.seq] = late;",
    )
    first = "(() => { const f = firsts.filter((x) => x !== undefined).sort((a, b) => a - b); return f.length ? f[f.length >> 1].toFixed(2) : \"n/a\"; })()"
    source = patch(source, "p50_ms: q(0.5),", f"first_p50_ms: {first}, p50_ms: q(0.5),")
    with open(path, "w") as out:
        out.write(source)


def run_harness(cmd, work, port):
    """Runs one harness command (killed after 600 s) against the server on `port`. Returns its
    stdout; the TCP segments the machine sent from the harness's first shout to its exit; the
    processor seconds the harness used over the same span; and, at the first shout, how many of
    its sockets were in delayed-ACK interactive mode and how many it had (each None if the first
    shout was not seen)."""
    harness = subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = threading.Timer(600, harness.kill)
    deadline.start()
    segments = cpu = None
    modes = (None, None)
    for line in harness.stderr:
        if line.strip() == SHOUTING:
            segments, cpu = tcp_out_segments(), cpu_seconds(harness.pid)
            modes = interactive_sockets(port)
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
    return stdout, segments, cpu, modes


# Netia's conversation topics name the conversation by its UUID (as Papercups' do); the peers'
# harness uses "conversation:bench". The settled peer runs use a topic of Netia's length.
NETIA_TOPIC = "conversation:01a231e5-2593-7260-94ab-38aefa85dd34"


def settled_variants(work):
    """Writes two variants of the (marked) harness that compare the servers under the same client
    conditions (docs/adr/0004-real-time.md, "Settled ACKs"):

    - fanout_settled.js: once the customer has joined, it waits 300 ms, sends one `typing` event
      (`typing: false`, which every target broadcasts to the agents; `true` would make Netia
      broadcast a `typing: false` at the first shout), and waits 300 ms again before shouting. Each
      pause follows exactly one frame to every agent socket, so every socket still in delayed-ACK
      interactive mode has a segment unacknowledged across one of them (whatever it had before),
      its delayed-ACK timer fires and it leaves that mode (tcp_delack_timer_handler): every
      target's harness then acknowledges each frame as it reads it, as it otherwise does for
      Netia's sockets and for a varying share of the peers'.
    - fanout_same_settled.js: the same, and the customer sends the peers a shout shaped like
      Netia's broadcast (the peers broadcast what they are sent; Netia builds its own frame) on a
      topic of Netia's length, so that the harness parses frames of the same bytes from every
      target."""
    source = open(os.path.join(work, "fanout.js")).read()
    settle = (
        "const pause = (ms) => new Promise((r) => setTimeout(r, ms)); await pause(300); "
        'sender.send(JSON.stringify(["1", "settle", topic, "typing", { typing: false }])); await pause(300); '
    )
    settled = patch(source, "let ref = 2, seq = 0;", settle + "let ref = 2, seq = 0;")
    with open(os.path.join(work, "fanout_settled.js"), "w") as out:
        out.write(settled)
    shout = "{ body: JSON.stringify({ seq: seq++, t: now(), pad }) }"
    same = patch(settled, shout, f"Object.assign({NETIA_SHAPED}, {shout})")
    same = patch(same, 'topic = "conversation:bench";', f'topic = "{NETIA_TOPIC}";')
    with open(os.path.join(work, "fanout_same_settled.js"), "w") as out:
        out.write(same)


def summarize(shapes, results):
    names = (
        "netia",
        "netia-base",
        "durable-peer",
        "memory-peer",
        "netia-settled",
        "netia-base-settled",
        "durable-peer-same-settled",
        "memory-peer-same-settled",
    )
    print(
        f"\n{'shape':<9} {'target':<26} runs  delivered   {'p50 ms (each run)':<22} {'p99 ms (each run)':<22} "
        "first ms, CPU s: server / PostgreSQL / harness shouting, TCP segments / delivery, "
        "interactive-ACK sockets (medians)"
    )
    for clients, rate in shapes:
        medians = {}
        for name in names:
            runs = results.get((clients, rate, name), [])
            if not runs:
                if "netia-base" not in name:  # a target only with NETIA_BASE_BIN
                    print(f"{clients}x{rate:<6} {name:<26} 0")
                continue

            def median_of(key, runs=runs):
                values = [float(r[key]) for r in runs if r.get(key) not in (None, "n/a")]
                return statistics.median(values) if values else None

            def shown(value, digits=2):
                return "n/a" if value is None else f"{value:.{digits}f}"

            p50 = [float(r["p50_ms"]) for r in runs]
            p99 = [float(r["p99_ms"]) for r in runs]
            share = sum(r["delivered"] for r in runs) / max(1, sum(r["expected"] for r in runs))
            server_cpu, pg_cpu = median_of("server_cpu_s"), median_of("pg_cpu_s")
            first = median_of("first_p50_ms")
            medians[name] = (statistics.median(p50), statistics.median(p99), server_cpu, pg_cpu, first)
            print(
                f"{clients}x{rate:<6} {name:<26} {len(runs):<5} {share:>8.2%}   "
                f"{' / '.join(f'{v:.1f}' for v in p50):<22} {' / '.join(f'{v:.1f}' for v in p99):<22} "
                f"{shown(first)}, {shown(server_cpu)} / {shown(pg_cpu)} / {shown(median_of('harness_cpu_s'))}, "
                f"{shown(median_of('segments_per_delivery'))}, {shown(median_of('interactive_ack_sockets'), 0)}"
            )
        for mine, peer, what, index in (
            ("netia", "netia-base", "p50", 0),
            ("netia", "netia-base", "p99", 1),
            ("netia", "netia-base", "server CPU", 2),
            ("netia", "netia-base", "PostgreSQL CPU", 3),
            ("netia-settled", "netia-base-settled", "p50", 0),
            ("netia-settled", "netia-base-settled", "p99", 1),
            ("netia", "durable-peer", "p50", 0),
            ("netia", "memory-peer", "p99", 1),
            ("netia-settled", "durable-peer-same-settled", "p50", 0),
            ("netia-settled", "durable-peer-same-settled", "first delivery", 4),
            ("netia-settled", "memory-peer-same-settled", "p99", 1),
        ):
            if mine in medians and peer in medians and medians[peer][index] and medians[mine][index] is not None:
                ratio = medians[mine][index] / medians[peer][index]
                print(f"  median {what} {mine} / {peer}: {ratio:.2f}")


if __name__ == "__main__":
    main()
