# Sourced by the bench scripts: starts a throwaway PostgreSQL (initdb + pg_ctl,
# as the unprivileged user `pooltune-test` when run as root; SCRAM over TCP on a
# free port), stops and removes it on exit, and sets URL and PGPASSWORD.
if command -v initdb >/dev/null 2>&1; then
    PGBIN=$(dirname "$(command -v initdb)")
else
    PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
fi
[ -x "$PGBIN/initdb" ] || { echo "no PostgreSQL server binaries (apt-get install postgresql)" >&2; exit 1; }

TMP=$(mktemp -d /tmp/pooltune-bench-XXXXXX)
RUN=()
if [ "$(id -u)" = 0 ]; then
    id -u pooltune-test >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin pooltune-test
    chown pooltune-test "$TMP"
    RUN=(runuser -u pooltune-test --)
fi
cleanup() {
    "${RUN[@]}" "$PGBIN/pg_ctl" -D "$TMP/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT

PW="exp-$RANDOM-$RANDOM"
echo "$PW" >"$TMP/pw"
[ ${#RUN[@]} -eq 0 ] || chown pooltune-test "$TMP/pw"
"${RUN[@]}" "$PGBIN/initdb" -D "$TMP/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    --pwfile="$TMP/pw" --no-sync -E UTF8 --locale=C >/dev/null
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"${RUN[@]}" "$PGBIN/pg_ctl" -D "$TMP/data" -l "$TMP/log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $TMP -c fsync=off" start >/dev/null
export PGPASSWORD=$PW
URL="postgres://postgres@127.0.0.1:$PORT/postgres"
