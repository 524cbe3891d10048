import json
import subprocess
import sys

#: old name -> where the tool lives now (the old names are deprecated shims)
MOVED = {
    "dali_mixup.cli": "dali_mixup.tools.cli",
    "dali_mixup.doctor": "dali_mixup.tools.doctor",
    "dali_mixup.bench": "dali_mixup.tools.bench",
    "dali_mixup.train": "dali_mixup.tools.train",
    "dali_mixup.datasets": "dali_mixup.tools.datasets",
    "dali_mixup.digits": "dali_mixup.tools.digits",
    "dali_mixup._gpu": "dali_mixup.tools.gpu",
}
HEAVY = ("cupy", "nvidia.dali", "torchvision", "PIL", "matplotlib")


def test_import_is_light():
    code = (
        "import sys, dali_mixup\n"
        "bad = [m for m in ('cupy', 'nvidia.dali', 'torchvision') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import dali_mixup imported {out.stdout.strip()}"


def test_the_core_imports_no_tool():
    code = (
        "import sys, dali_mixup\n"
        "print(','.join(sorted(m for m in sys.modules if m == 'dali_mixup.tools' or m.startswith('dali_mixup.tools.'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import dali_mixup imported {out.stdout.strip()}"


_SHIMS = r"""
import importlib, json, sys, warnings
import dali_mixup  # the core first: what each import below adds is the shim's own cost
moved, heavy = json.loads(sys.argv[1]), json.loads(sys.argv[2])
out = {}
for old, new in moved.items():
    before = set(sys.modules)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    added = sorted(set(sys.modules) - before)
    out[old] = {
        "same": module is sys.modules[new] and module is sys.modules[old],
        "deprecations": [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)],
        "tools": [m for m in added if m.startswith("dali_mixup.") and m != old],
        "heavy": [m for m in heavy if m in added],
    }
print(json.dumps(out))
"""


def test_old_tool_names_warn_and_are_the_moved_modules():
    """Each old name is the moved module itself (attributes and monkeypatching work), says it is
    deprecated, and imports its target alone: no other tool, nothing heavy."""
    out = subprocess.run([sys.executable, "-c", _SHIMS, json.dumps(MOVED), json.dumps(HEAVY)],
                         capture_output=True, text=True, check=True)
    got = json.loads(out.stdout)
    own = {"dali_mixup.tools", "dali_mixup.tools.meta"}  # the package, and bench's metadata module
    for old, new in MOVED.items():
        g = got[old]
        assert g["same"], old
        assert g["deprecations"] == [f"{old} is deprecated; import {new} instead"], (old, g["deprecations"])
        assert set(g["tools"]) <= own | {new} and new in g["tools"], (old, g["tools"])
        assert g["heavy"] == [], (old, g["heavy"])
