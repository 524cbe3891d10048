import subprocess
import sys

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


def test_old_tool_names_are_gone():
    """Version 0.1.0 was never released: the tools live in ``dali_mixup.tools`` only."""
    code = "import importlib.util as u; print([m for m in %r if u.find_spec(m)])" % (
        ["dali_mixup.cli", "dali_mixup.doctor", "dali_mixup.bench", "dali_mixup.train", "dali_mixup.datasets",
         "dali_mixup.digits", "dali_mixup._gpu"],)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
