#!/bin/sh
# Records the whole-run traces of C programs the fragmentation study replays
# (`cargo xtask lab --study fragmentation`), with heapkit-malloc's HEAPKIT_TRACE: python3 and
# sqlite3 on the scripts here, and GCC's compiler proper (cc1) compiling one of
# heapkit-malloc's C tests, as Johnstone and Wilson measured GCC. Unlike the lab's timing
# traces these are not cut short: fragmentation needs every free.
# Run from the workspace root: sh crates/lab/traces/study/record.sh
set -eu
cargo build --release -q -p heapkit-malloc
lib=$PWD/target/release/libheapkit_malloc.so
here=crates/lab/traces/study
work=$(mktemp -d)

# %p: processes these start inherit the variable (a pyenv shim, gcc's driver); the largest
# trace is the program's own.
largest() { ls -S "$work"/"$1"-*.trace | head -1; }

LD_PRELOAD=$lib HEAPKIT_TRACE=$work/python-%p.trace PYTHONMALLOC=malloc PYTHONHASHSEED=0 \
    python3 $here/fragmentation.py >/dev/null
gzip -9n <"$(largest python)" >$here/python.trace.gz

LD_PRELOAD=$lib HEAPKIT_TRACE=$work/sqlite-%p.trace \
    sqlite3 "$work/study.db" <$here/fragmentation.sql >/dev/null
gzip -9n <"$(largest sqlite)" >$here/sqlite.trace.gz

LD_PRELOAD=$lib HEAPKIT_TRACE=$work/cc1-%p.trace \
    gcc -O2 -c crates/malloc/tests/c/edges.c -o "$work/edges.o"
gzip -9n <"$(largest cc1)" >$here/cc1.trace.gz
rm -r "$work"
