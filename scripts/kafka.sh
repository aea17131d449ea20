#!/usr/bin/env bash
# Single-node Apache Kafka 4.x (KRaft, broker+controller) for tests and CI, loopback only.
# See `scripts/kafka.sh --help`.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
CONF_DIR="$SCRIPT_DIR/kafka"

KAFKA_PORT="${KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-19093}"
KAFKA_HEAP="${KAFKA_HEAP:-512m}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"
KAFKA_JIT="${KAFKA_JIT:-fast}"
KAFKA_JVM_OPTS="${KAFKA_JVM_OPTS:-}"
STATE_DIR="${KAFKA_STATE_DIR:-$REPO_ROOT/.cache/kafka}"

LIBS_DIR="$STATE_DIR/libs"
PROBE_DIR="$STATE_DIR/probe"
CDS_DIR="$STATE_DIR/cds"
DATA_DIR="$STATE_DIR/data"
LOG_DIR="$STATE_DIR/logs"
PID_FILE="$STATE_DIR/kafka.pid"
PROPS_FILE="$STATE_DIR/server.properties"
FORMAT_FILE="$STATE_DIR/format.env"
LOCK_FILE="$STATE_DIR/lock"
BOOTSTRAP="127.0.0.1:$KAFKA_PORT"

usage() {
    cat <<EOF
Usage: scripts/kafka.sh <command>

Runs a real single-node Apache Kafka 4.x broker (KRaft, combined broker+controller)
on 127.0.0.1 for tests and CI. All state lives under ${STATE_DIR#"$REPO_ROOT"/}.

Commands:
  start     fetch the classpath (Maven) if missing, format storage if needed, start the
            broker in the background and wait until it answers DescribeCluster;
            prints the bootstrap address. Already running: says so, exits 0.
  stop      SIGTERM, wait up to KAFKA_STOP_TIMEOUT seconds, then SIGKILL.
  status    "running" (exit 0) or "stopped" (exit 3); checks the broker answers.
  restart   stop, then start; topics and data are kept.
  wipe      stop, then delete data and logs (the next start formats a fresh cluster).
  -h, --help  this text.

Environment (defaults):
  KAFKA_PORT=19092             PLAINTEXT listener, bootstrap 127.0.0.1:\$KAFKA_PORT
  KAFKA_CONTROLLER_PORT=19093  KRaft controller listener (fixed once formatted)
  KAFKA_HEAP=512m              broker -Xmx
  KAFKA_START_TIMEOUT=90       seconds to wait for readiness
  KAFKA_STOP_TIMEOUT=30        seconds to wait after SIGTERM before SIGKILL
  KAFKA_JIT=fast               fast: C1 JIT only (quicker start on small machines);
                               full: default tiered JIT (better sustained throughput)
  KAFKA_JVM_OPTS=              extra broker JVM flags
  KAFKA_STATE_DIR=.cache/kafka data, logs, pid file, classpath

Logs: \$KAFKA_STATE_DIR/logs/server.log (WARN+) and logs/stdout.log (JVM output).
EOF
}

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- prerequisites -------------------------------------------------------------------

apt_install() {
    [ "$(id -u)" -eq 0 ] || die "missing packages: $*; install them (needs root)"
    command -v apt-get >/dev/null || die "missing packages: $*; no apt-get here"
    log "installing Debian packages: $*"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "$@" >&2
}

ensure_tools() {
    local pkgs=()
    command -v java >/dev/null && command -v javac >/dev/null || pkgs+=(openjdk-17-jdk-headless)
    command -v mvn >/dev/null || pkgs+=(maven)
    command -v flock >/dev/null || pkgs+=(util-linux)
    [ "${#pkgs[@]}" -eq 0 ] || apt_install "${pkgs[@]}"
    local v
    v="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
    [ "${v%%.*}" -ge 17 ] 2>/dev/null || die "Kafka 4.x needs Java 17+, found '${v:-unknown}'"
}

kafka_version() {
    sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$CONF_DIR/pom.xml"
}

ensure_classpath() {
    local version stamp want
    version="$(kafka_version)"
    stamp="$LIBS_DIR/.pom.sha256"
    want="$(sha256sum "$CONF_DIR/pom.xml" | cut -d' ' -f1)"
    if [ ! -f "$LIBS_DIR/kafka_2.13-$version.jar" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        log "fetching Kafka $version classpath with Maven (cached in ~/.m2)"
        rm -rf "$LIBS_DIR" "$CDS_DIR"
        mvn -q -B -Dstyle.color=never -f "$CONF_DIR/pom.xml" dependency:copy-dependencies \
            -DincludeScope=runtime -DoutputDirectory="$LIBS_DIR" >"$STATE_DIR/mvn.log" 2>&1 \
            || { tail -n 40 "$STATE_DIR/mvn.log" >&2; die "mvn dependency:copy-dependencies failed"; }
        [ -f "$LIBS_DIR/kafka_2.13-$version.jar" ] || die "kafka_2.13-$version.jar missing after mvn"
        echo "$want" >"$stamp"
    fi
    if [ ! -f "$PROBE_DIR/KafkaReady.class" ] || [ "$CONF_DIR/KafkaReady.java" -nt "$PROBE_DIR/KafkaReady.class" ] \
        || [ "$stamp" -nt "$PROBE_DIR/KafkaReady.class" ]; then
        mkdir -p "$PROBE_DIR"
        javac -nowarn -cp "$LIBS_DIR/*" -d "$PROBE_DIR" "$CONF_DIR/KafkaReady.java" >&2 \
            || die "cannot compile the readiness probe"
    fi
}

# --- state ---------------------------------------------------------------------------

# Prints the pid of our running broker, or fails.
running_pid() {
    local pid
    pid="$(cat "$PID_FILE" 2>/dev/null)" || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # Guard against pid reuse: it must be our kafka.Kafka with our properties file.
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "kafka.Kafka $PROPS_FILE" || return 1
    echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

probe() { # probe <timeout-seconds> [pid]
    java -Xmx64m -XX:TieredStopAtLevel=1 -Dlog4j2.level=error \
        -cp "$PROBE_DIR:$LIBS_DIR/*" KafkaReady "$BOOTSTRAP" "$@"
}

write_props() {
    sed -e "s|@PORT@|$KAFKA_PORT|g" -e "s|@CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
        -e "s|@DATA_DIR@|$DATA_DIR|g" "$CONF_DIR/server.properties.in" >"$PROPS_FILE.tmp"
    mv "$PROPS_FILE.tmp" "$PROPS_FILE"
}

# JVM flags for a class-data-sharing archive of the broker's classes: the first run writes
# it when the broker exits (stop), later runs map it (~2 s faster start on 2 cores).
# Rebuilt when the JDK or the classpath changes.
cds_flags() {
    local jdk
    jdk="$(java -version 2>&1 | tr -d '\n')"
    mkdir -p "$CDS_DIR"
    if [ -f "$CDS_DIR/kafka.jsa" ] && [ "$(cat "$CDS_DIR/jdk" 2>/dev/null)" = "$jdk" ] \
        && [ "$CDS_DIR/kafka.jsa" -nt "$LIBS_DIR/.pom.sha256" ]; then
        echo "-XX:SharedArchiveFile=$CDS_DIR/kafka.jsa"
    else
        rm -f "$CDS_DIR/kafka.jsa"
        echo "$jdk" >"$CDS_DIR/jdk"
        echo "-XX:ArchiveClassesAtExit=$CDS_DIR/kafka.jsa"
    fi
}

java_run() { # java_run <main class> <args...>: a Kafka tool with our classpath and logging
    java -Xmx256m -Dkafka.logs.dir="$LOG_DIR" -Dlog4j2.configurationFile="$CONF_DIR/log4j2.properties" \
        -cp "$LIBS_DIR/*" "$@"
}

ensure_formatted() {
    if [ -f "$DATA_DIR/meta.properties" ] && [ -f "$FORMAT_FILE" ]; then
        local formatted_port
        formatted_port="$(sed -n 's/^CONTROLLER_PORT=//p' "$FORMAT_FILE")"
        [ "$formatted_port" = "$KAFKA_CONTROLLER_PORT" ] || die "storage was formatted with controller \
port $formatted_port (the KRaft voter record keeps it); use KAFKA_CONTROLLER_PORT=$formatted_port or run 'wipe'"
        return 0
    fi
    rm -rf "$DATA_DIR" "$FORMAT_FILE"
    mkdir -p "$DATA_DIR"
    local cluster_id
    # Same form as `StorageTool random-uuid` (base64url of 16 random bytes, not starting
    # with '-'), without paying for another JVM start.
    cluster_id=-
    while [ "${cluster_id:0:1}" = - ]; do
        cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    done
    log "formatting storage (cluster id $cluster_id)"
    java_run kafka.tools.StorageTool format -t "$cluster_id" -c "$PROPS_FILE" --standalone >"$LOG_DIR/format.log" 2>&1 \
        || { cat "$LOG_DIR/format.log" >&2; die "formatting storage failed"; }
    printf 'CLUSTER_ID=%s\nCONTROLLER_PORT=%s\n' "$cluster_id" "$KAFKA_CONTROLLER_PORT" >"$FORMAT_FILE"
}

show_logs() {
    local f
    for f in "$LOG_DIR/stdout.log" "$LOG_DIR/server.log"; do
        [ -s "$f" ] || continue
        log "--- last 40 lines of ${f#"$REPO_ROOT"/} ---"
        tail -n 40 "$f" >&2
    done
}

# --- commands ------------------------------------------------------------------------

cmd_start() {
    local pid t0 t1
    if pid="$(running_pid)"; then
        log "already running (pid $pid)"
        echo "$BOOTSTRAP"
        return 0
    fi
    t0=$(date +%s.%N)
    ensure_tools
    ensure_classpath
    mkdir -p "$LOG_DIR"
    for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
        ! port_open "$p" || die "port 127.0.0.1:$p is already in use by another process"
    done
    # Keep only this run's broker log, so a failure shows the right tail.
    [ ! -f "$LOG_DIR/server.log" ] || mv -f "$LOG_DIR/server.log" "$LOG_DIR/server.log.prev"
    write_props
    ensure_formatted

    local jvm_opts=()
    # shellcheck disable=SC2206 # word splitting of user-given flags is intended
    jvm_opts=(-Xmx"$KAFKA_HEAP" -Xms128m -XX:+UseG1GC -XX:MaxGCPauseMillis=20
        -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true "$(cds_flags)" $KAFKA_JVM_OPTS)
    [ "$KAFKA_JIT" = full ] || jvm_opts+=(-XX:TieredStopAtLevel=1)

    # setsid: own session, so the broker outlives the calling shell and its process group.
    setsid java "${jvm_opts[@]}" \
        -Dkafka.logs.dir="$LOG_DIR" -Dlog4j2.configurationFile="$CONF_DIR/log4j2.properties" \
        -cp "$LIBS_DIR/*" kafka.Kafka "$PROPS_FILE" \
        </dev/null >"$LOG_DIR/stdout.log" 2>&1 9>&- &
    pid=$!
    echo "$pid" >"$PID_FILE"
    log "started broker pid $pid, waiting up to ${KAFKA_START_TIMEOUT}s for $BOOTSTRAP"

    local rc=0
    probe "$KAFKA_START_TIMEOUT" "$pid" >/dev/null || rc=$?
    if [ "$rc" -ne 0 ]; then
        if [ "$rc" -eq 3 ]; then log "error: broker exited during startup"
        else log "error: broker not ready after ${KAFKA_START_TIMEOUT}s"; fi
        show_logs
        stop_pid "$pid" >/dev/null 2>&1 || true
        rm -f "$PID_FILE"
        exit 1
    fi
    t1=$(date +%s.%N)
    log "ready in $(awk "BEGIN{printf \"%.1f\", $t1-$t0}")s (Kafka $(kafka_version), pid $pid)"
    echo "$BOOTSTRAP"
}

stop_pid() {
    local pid="$1" i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < KAFKA_STOP_TIMEOUT * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    log "broker pid $pid still alive after ${KAFKA_STOP_TIMEOUT}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$CDS_DIR/kafka.jsa" # may be half written
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    die "broker pid $pid survived SIGKILL"
}

cmd_stop() {
    local pid
    if ! pid="$(running_pid)"; then
        rm -f "$PID_FILE"
        log "not running"
        return 0
    fi
    log "stopping broker pid $pid"
    stop_pid "$pid"
    rm -f "$PID_FILE"
    log "stopped"
}

cmd_status() {
    local pid
    if ! pid="$(running_pid)"; then
        echo "stopped"
        return 3
    fi
    if [ -f "$PROBE_DIR/KafkaReady.class" ] && probe 5 "$pid" >/dev/null 2>&1; then
        echo "running pid=$pid bootstrap=$BOOTSTRAP"
        return 0
    fi
    echo "running pid=$pid bootstrap=$BOOTSTRAP (not answering)"
    return 1
}

cmd_wipe() {
    cmd_stop
    rm -rf "$DATA_DIR" "$FORMAT_FILE" "$PROPS_FILE" "$LOG_DIR"
    log "wiped data and logs"
}

main() {
    local cmd="${1:-}"
    case "$cmd" in
        -h | --help | help) usage; return 0 ;;
        start | stop | status | restart | wipe) ;;
        "") usage >&2; return 64 ;;
        *) log "unknown command '$cmd'"; usage >&2; return 64 ;;
    esac
    mkdir -p "$STATE_DIR"
    # Never commit runtime state, whatever the repository's .gitignore says.
    [ -f "$STATE_DIR/.gitignore" ] || echo '*' >"$STATE_DIR/.gitignore"
    if [ "$cmd" != status ]; then
        command -v flock >/dev/null || ensure_tools
        # One command at a time per state dir (parallel CI jobs, concurrent test runners).
        exec 9>"$LOCK_FILE"
        flock -w 300 9 || die "another kafka.sh command holds $LOCK_FILE"
    fi
    case "$cmd" in
        start) cmd_start ;;
        stop) cmd_stop ;;
        status) cmd_status ;;
        restart) cmd_stop; cmd_start ;;
        wipe) cmd_wipe ;;
    esac
}

main "$@"
