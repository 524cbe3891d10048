"""Deprecated name of ``dali_mixup.tools.cli`` (the tools moved out of the core); import that instead.

Importing this module imports ``dali_mixup.tools.cli`` and nothing else, and makes this name the
same module object, so attribute access and monkeypatching behave as before; ``python -m
dali_mixup.cli`` runs ``python -m dali_mixup.tools.cli``.
"""

import importlib
import sys
import warnings

warnings.warn("dali_mixup.cli is deprecated; import dali_mixup.tools.cli instead", DeprecationWarning, stacklevel=2)
if __name__ == "__main__":  # python -m dali_mixup.cli
    import runpy

    runpy.run_module("dali_mixup.tools.cli", run_name="__main__", alter_sys=True)
else:
    sys.modules[__name__] = importlib.import_module("dali_mixup.tools.cli")
