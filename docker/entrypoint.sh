#!/bin/sh
# The image's entry point: `dali-mixup "$@"`, after one check that the commands which write
# results (bench, train) can write where they will: a results folder the container's user cannot
# write (a host folder mounted at /results, owned by someone else) then ends in one line and exit
# status 2, not in a Python traceback after the whole run.
set -eu

out=
case "${1:-}" in
    bench) out=bench-out ;;
    train) out=runs/train ;;
esac

if [ -n "$out" ]; then
    prev=
    for arg in "$@"; do
        case "$arg" in
            --out=*) out=${arg#--out=} ;;
            *) if [ "$prev" = --out ]; then out=$arg; fi ;;
        esac
        prev=$arg
    done
    case "$out" in
        /*) ;;
        *) out="$(pwd)/$out" ;;
    esac
    # The folder itself when it exists, else the nearest existing folder above it (created there).
    dir=$out
    while [ ! -e "$dir" ]; do dir=$(dirname "$dir"); done
    if [ ! -d "$dir" ] || [ ! -w "$dir" ] || [ ! -x "$dir" ]; then
        echo "dali-mixup $1: cannot write results to $out: $dir is not writable by uid $(id -u) (gid $(id -g)); make the mounted folder writable by that uid, or run with --user \"\$(id -u):\$(id -g)\" (see docker/README.md)" >&2
        exit 2
    fi
fi

exec dali-mixup "$@"
