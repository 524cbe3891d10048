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
