#!/bin/sh
# Records the C programs' traces shipped here (python, sqlite, redis) with heapkit-malloc's
# HEAPKIT_TRACE, then keeps each one's first events (and frees of what they left live).
# Run from the workspace root: sh crates/lab/traces/record-programs.sh
set -eu
cargo build --release -q -p heapkit-malloc
cargo build --release -q -p heapkit-trace --example truncate
lib=$PWD/target/release/libheapkit_malloc.so
truncate=$PWD/target/release/examples/truncate
work=$(mktemp -d)
traces=crates/lab/traces
programs=crates/malloc/tests/programs

# %p: programs these start inherit the variable; the largest trace is the program's own.
largest() { ls -S "$work"/"$1"-*.trace | head -1; }

LD_PRELOAD=$lib HEAPKIT_TRACE=$work/python-%p.trace PYTHONMALLOC=malloc \
    python3 $programs/workload.py >/dev/null
"$truncate" "$(largest python)" $traces/python.trace 30000

LD_PRELOAD=$lib HEAPKIT_TRACE=$work/sqlite-%p.trace \
    sqlite3 "$work/sqlite.db" <$programs/workload.sql >/dev/null
"$truncate" "$(largest sqlite)" $traces/sqlite.trace 30000

LD_PRELOAD=$lib HEAPKIT_TRACE=$work/redis-%p.trace \
    redis-server --port 6398 --bind 127.0.0.1 --save "" --appendonly no --io-threads 2 \
    >/dev/null &
sleep 1
redis-benchmark -p 6398 -q -n 20000 -c 10 -d 200 -t set,get,lpush,lpop,hset >/dev/null
redis-cli -p 6398 shutdown nosave >/dev/null || true
wait
"$truncate" "$(largest redis)" $traces/redis.trace 40000
rm -r "$work"
