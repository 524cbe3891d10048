#!/usr/bin/env bash
# Rehearse `make gpu-check` on this CPU machine in an environment set up like the lent GPU host:
#   1. a venv from benchmarks/gpu_host_packages.txt (the host's packages at their versions; no
#      soundfile, monai, pycocotools, no DALI);
#   2. DALI staged as the GPU session stages it (../shared/gpu/stage.sh -> .gpu-stage/part.NN) and
#      received as the three device calls receive it (.gpu-stage/receive.sh, one part per call,
#      exit 3 twice, then unpacked), into this rehearsal's own folder instead of /tmp/site;
#   3. the GPU session's command in its dry-run form (benchmarks/run_gpu_session.sh --dry-run);
#   4. a report: date, versions, each stage's status and seconds, the time of each step.
# Not part of CI: the first run downloads ~1-4 GB (torch and its CUDA libraries) and stages DALI
# (1.5-6 minutes). Later runs reuse the venv (while the pinned list is unchanged) and the stage.
# Run it whenever benchmarks/gpu_check.py or what it calls changes; say in the closing note when.
#
# Usage: bash benchmarks/rehearse_gpu_host.sh [DIR]      (default /tmp/dali-mixup-gpu-host)
#   PYTHON=python3.12   the interpreter for the venv (default: python3.12 on PATH, else pyenv's 3.12)
#   FRESH=1             rebuild the venv
# Exit status: 0 when every stage of the dry run is ok (or skipped for a stated reason), else 1.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
R=${1:-/tmp/dali-mixup-gpu-host}
LIST=benchmarks/gpu_host_packages.txt
VENV=$R/venv
mkdir -p "$R"
REPORT=$R/report.txt
: >"$REPORT"
say() { echo "$*" | tee -a "$REPORT"; }
t_all=$SECONDS
say "rehearse_gpu_host: $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- 2>/dev/null || echo ' (dirty tree)'), in $R"

# --- 1. the venv ---------------------------------------------------------------------------------
py=${PYTHON:-}
if [ -z "$py" ]; then
  if command -v python3.12 >/dev/null && python3.12 -c '' 2>/dev/null; then py=python3.12
  else py=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12 2>/dev/null | sort -V | tail -1); fi
fi
if [ -z "$py" ] || ! "$py" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
  say "FAIL: no Python 3.12 here (the host has 3.12.3); set PYTHON="; exit 1
fi
say "python: $("$py" -c 'import platform; print(platform.python_version())') (host: 3.12.3)"
want=$(sha256sum "$LIST" | cut -c1-16)
t=$SECONDS
if [ "${FRESH:-0}" = 1 ] || [ "$(cat "$VENV/.pinned" 2>/dev/null)" != "$want" ]; then
  rm -rf "$VENV"
  "$py" -m venv "$VENV" || { say "FAIL: venv"; exit 1; }
  pip=("$VENV/bin/python" -m pip install -q --no-input)
  log=$R/pip.log
  : >"$log"
  if ! "${pip[@]}" -r "$LIST" >>"$log" 2>&1; then
    # one at a time: a pinned version the index refuses falls back to the nearest one below it,
    # then to the newest, and the report says so
    say "pip: the whole list did not install at once (see $log); one package at a time:"
    grep -vE '^\s*(#|$)' "$LIST" | while read -r req; do
      name=${req%%==*}; ver=${req#*==}
      if "${pip[@]}" "$req" >>"$log" 2>&1; then continue; fi
      if [ "$name" != "$req" ] && "${pip[@]}" "$name<=$ver" >>"$log" 2>&1; then
        say "  $req refused; nearest below: $("$VENV/bin/python" -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p')"
      elif "${pip[@]}" "$name" >>"$log" 2>&1; then
        say "  $req refused; newest: $("$VENV/bin/python" -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p')"
      else
        say "  $req: not installable here"
      fi
    done
  fi
  echo "$want" >"$VENV/.pinned"
fi
for absent in soundfile monai pycocotools nvidia-dali-cuda130 nvidia-dali-cuda120; do
  if "$VENV/bin/python" -m pip show -q "$absent" >/dev/null 2>&1; then
    "$VENV/bin/python" -m pip uninstall -q -y "$absent" >/dev/null 2>&1
    say "removed $absent (a dependency brought it; the host has none)"
  fi
done
# what differs from the pins
mismatch=$(grep -E '^[A-Za-z0-9_.-]+==' "$LIST" | while IFS='=' read -r name _ ver; do
  got=$("$VENV/bin/python" -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p')
  [ "$got" = "$ver" ] || echo "$name $ver -> ${got:-missing}"
done)
say "venv: $VENV, $((SECONDS - t)) s; $("$VENV/bin/python" -c 'import torch, numpy; print("torch", torch.__version__, "numpy", numpy.__version__)' 2>&1 | tail -1)"
[ -z "$mismatch" ] || say "not at the pinned version: $(echo "$mismatch" | paste -sd ';')"

# --- 2. DALI, staged and received as in the GPU session ------------------------------------------
t=$SECONDS
if ! bash ../shared/gpu/stage.sh >"$R/stage.log" 2>&1; then
  say "FAIL: ../shared/gpu/stage.sh (see $R/stage.log)"; exit 1
fi
say "stage: $(tail -1 "$R/stage.log"), $((SECONDS - t)) s"
t=$SECONDS
rm -rf "$R/site" "$R/gpu-stage" "$R/calls"
# receive.sh as the device runs it, with its /tmp/ folders moved into $R/ (other work on this
# machine may use /tmp/site): one call per part, each carrying only that part
sed "s#/tmp/#$R/#g" .gpu-stage/receive.sh >"$R/receive.sh"
parts=(.gpu-stage/part.*)
calls=""
for i in "${!parts[@]}"; do
  call=$R/calls/$i
  mkdir -p "$call/.gpu-stage"
  cp .gpu-stage/SHA256 "$call/.gpu-stage/"
  ln -s "$REPO/${parts[$i]}" "$call/.gpu-stage/"
  (cd "$call" && PATH="$VENV/bin:$PATH" bash "$R/receive.sh" >"$R/receive-$i.log" 2>&1)
  calls+="${calls:+, }$?"
done
rm -rf "$R/calls"
say "receive: ${#parts[@]} calls, exit $calls (expected 3 for each but the last, then 0), $((SECONDS - t)) s; $(tail -1 "$R/receive-$((${#parts[@]} - 1)).log")"
[ -d "$R/site/nvidia/dali" ] || { say "FAIL: DALI not unpacked"; exit 1; }

# --- 3. the GPU session's command, dry-run form --------------------------------------------------
t=$SECONDS
out=$R/out
rm -rf "$out"
mkdir -p "$out"
export GIT_COMMIT=${GIT_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null)}
PYTHON="$VENV/bin/python" DM_SITE="$R/site" OUT="$out" bash benchmarks/run_gpu_session.sh --dry-run \
  >"$R/dry-run.log" 2>&1
rc=$?
say "dry run: exit $rc, $((SECONDS - t)) s (log $R/dry-run.log, files in $out)"

# --- 4. report -----------------------------------------------------------------------------------
"$VENV/bin/python" - "$out" <<'EOF' | tee -a "$REPORT"
import json, pathlib, sys
files = sorted(pathlib.Path(sys.argv[1]).glob("gpu-check-*.json"))
if not files:
    print("no gpu-check JSON was written"); sys.exit(0)
d = json.loads(files[-1].read_text())
v = d["metadata"].get("versions", {})
print(f"versions: torch {v.get('torch')}, DALI {v.get('nvidia.dali')}, CuPy {v.get('cupy')}, "
      f"numpy {v.get('numpy')}, torchvision {v.get('torchvision')}; commit {d['metadata']['git'].get('commit')}")
for s in d["stages"]:
    why = f"  ({s['skip_reason']})" if s.get("skip_reason") else ""
    print(f"  {s['status']:<8} {s['name']:<10} {s['seconds']:6.1f} s{why}")
    if s["status"] in ("failed", "timeout"):
        print("      " + "\n      ".join(s["log_tail"].splitlines()[-6:]))
EOF
say "total: $((SECONDS - t_all)) s; report in $REPORT"
exit $([ "$rc" = 0 ] && echo 0 || echo 1)
