"""Deprecated name of ``dali_mixup.tools.train`` (the tools moved out of the core); import that instead.

Importing this module imports ``dali_mixup.tools.train`` and nothing else, and makes this name the
same module object, so attribute access and monkeypatching behave as before; ``python -m
dali_mixup.train`` runs ``python -m dali_mixup.tools.train``.
"""

import importlib
import sys
import warnings

warnings.warn("dali_mixup.train is deprecated; import dali_mixup.tools.train instead", DeprecationWarning, stacklevel=2)
if __name__ == "__main__":  # python -m dali_mixup.train
    import runpy

    runpy.run_module("dali_mixup.tools.train", run_name="__main__", alter_sys=True)
else:
    sys.modules[__name__] = importlib.import_module("dali_mixup.tools.train")
