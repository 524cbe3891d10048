"""Deprecated name of ``dali_mixup.tools.bench`` (the tools moved out of the core); import that instead.

Importing this module imports ``dali_mixup.tools.bench`` and nothing else, and makes this name the
same module object, so attribute access and monkeypatching behave as before.
"""

import importlib
import sys
import warnings

warnings.warn("dali_mixup.bench is deprecated; import dali_mixup.tools.bench instead", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = importlib.import_module("dali_mixup.tools.bench")
