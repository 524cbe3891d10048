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


def test_the_core_imports_no_integration_and_no_framework():
    """``import dali_mixup`` (and building its loaders' front) imports no integration and none of
    the frameworks they glue to; ``dali_mixup.integrations`` itself imports none of its modules."""
    code = (
        "import sys, dali_mixup, dali_mixup.kinds.image\n"
        "core = sorted(m for m in sys.modules if m.startswith('dali_mixup.integrations'))\n"
        "frameworks = [m for m in ('lightning', 'pytorch_lightning', 'torchdata', 'timm') if m in sys.modules]\n"
        "import dali_mixup.integrations\n"
        "package = sorted(m for m in sys.modules if m.startswith('dali_mixup.integrations.'))\n"
        "print(core, frameworks, package)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] [] []", f"imported: {out.stdout.strip()}"


def test_the_timm_mapping_needs_no_timm():
    code = "import sys, dali_mixup.integrations.timm; print('timm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
