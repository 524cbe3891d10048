"""The ``dali-mixup`` command's tools, apart from the library: ``bench``, ``doctor``, ``train``,
``prepare-digits`` and their helpers (data sets, benchmark metadata, the GPU check).

Nothing here is imported by ``import dali_mixup``; each tool uses the library as a user would.
This package imports none of its modules: ``dali_mixup.tools.cli`` imports only the command that
runs.
"""
