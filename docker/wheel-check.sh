#!/usr/bin/env bash
# `make wheel-check`: what a user who runs `pip install dali-mixup` gets, checked before they do.
#
# Builds the sdist and the wheel (`python -m build`: the wheel is built from the sdist, so both are
# checked), compares the wheel's files with the package's source files (a module or data file left
# out shows up here), installs the wheel (not the source tree) with the cpu, bench and dev extras
# into a fresh virtual environment at the versions of constraints.txt, and runs `dali-mixup doctor`
# and a subset of the CPU tests against it, from a folder outside the repository with a copy of
# tests/, so that nothing can import the source tree. pip's cache (or the local package mirror)
# usually holds the dependencies already: `make test` installed the same versions.
#
# Environment (optional): PYTHON (default python3), WHEEL_CHECK_DIR (default: a new temporary
# folder, removed afterwards), WHEEL_TESTS (test files, relative to tests/).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
WHEEL_TESTS=${WHEEL_TESTS:-test_imports.py test_doctor.py test_config.py test_mix.py test_cutmix.py test_sampler.py test_kernel_source.py test_iterator.py test_bench.py}
if [ -n "${WHEEL_CHECK_DIR:-}" ]; then
    WORK=$WHEEL_CHECK_DIR; mkdir -p "$WORK"
else
    WORK=$(mktemp -d -t dali-mixup-wheel-check.XXXXXX)
    trap 'rm -rf "$WORK"' EXIT
fi
say() { printf '\n== %s\n' "$*"; }
t0=$(date +%s)

say "build the sdist and the wheel ($WORK/dist)"
"$PYTHON" -m venv "$WORK/build-env"
"$WORK/build-env/bin/pip" install -q -c "$ROOT/constraints.txt" build
# PIP_CONSTRAINT reaches the isolated build environment too: the pinned setuptools builds.
PIP_CONSTRAINT="$ROOT/constraints.txt" "$WORK/build-env/bin/python" -m build --outdir "$WORK/dist" "$ROOT"
ls -l "$WORK/dist"
wheel=$(ls "$WORK"/dist/*.whl)

say "the wheel holds every file of the package"
"$WORK/build-env/bin/python" - "$wheel" "$ROOT" <<'EOF'
import pathlib, sys, zipfile
wheel, root = sys.argv[1], pathlib.Path(sys.argv[2])
names = set(zipfile.ZipFile(wheel).namelist())
source = sorted(p.relative_to(root).as_posix() for p in (root / "dali_mixup").rglob("*")
                if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo"))
missing = [s for s in source if s not in names]
packages = sorted({pathlib.PurePosixPath(s).parent.as_posix() for s in source if s.endswith(".py")})
no_init = [p for p in packages if f"{p}/__init__.py" not in source]
entry = next((n for n in names if n.endswith(".dist-info/entry_points.txt")), None)
scripts = zipfile.ZipFile(wheel).read(entry).decode() if entry else ""
print(f"{len(source)} source files, {len(names)} files in the wheel")
print("console scripts:", " ".join(l.strip() for l in scripts.splitlines() if "=" in l))
problems = [f"not in the wheel: {m}" for m in missing]
problems += [f"package folder without __init__.py (setuptools leaves it out): {p}" for p in no_init]
if "dali-mixup" not in scripts:
    problems.append("no dali-mixup console script")
for p in problems:
    print("wheel-check: problem:", p)
sys.exit(1 if problems else 0)
EOF

say "install the wheel with the cpu, bench and dev extras into a fresh venv"
"$PYTHON" -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install -q -c "$ROOT/constraints.txt" --upgrade pip
"$WORK/venv/bin/pip" install -q -c "$ROOT/constraints.txt" "${wheel}[cpu,bench,dev]"
"$WORK/venv/bin/pip" check

say "dali-mixup doctor (from $WORK, not the repository)"
cd "$WORK"
"$WORK/venv/bin/python" -c "import dali_mixup, sys; f = dali_mixup.__file__; print('dali_mixup from', f); sys.exit(not f.startswith('$WORK/venv/'))"
"$WORK/venv/bin/dali-mixup" doctor --device cpu

say "CPU tests against the installed wheel: $WHEEL_TESTS"
cp -r "$ROOT/tests" "$WORK/tests"
cp "$ROOT/pyproject.toml" "$WORK/pyproject.toml"   # the markers; the source tree stays behind
rm -rf "$WORK/tests/__pycache__"
files=()
for f in $WHEEL_TESTS; do
    if [ -e "$WORK/tests/$f" ]; then files+=("$WORK/tests/$f"); else echo "wheel-check: no tests/$f, skipped"; fi
done
"$WORK/venv/bin/python" -m pytest -p no:cacheprovider --rootdir "$WORK" -c "$WORK/pyproject.toml" \
    -m "not gpu and not slow" -q "${files[@]}"

echo "wheel-check: done in $(( $(date +%s) - t0 )) s"
