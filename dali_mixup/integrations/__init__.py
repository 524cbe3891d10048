"""Glue for the frameworks people already train with; each module imports its framework on use.

* ``dali_mixup.integrations.lightning``: ``MixupDataModule``, a ``LightningDataModule`` over
  ``dali_mixup.build_loader`` (extra ``lightning``).
* ``dali_mixup.integrations.torchdata``: ``MixupNode``, a ``torchdata.nodes`` node that mixes the
  batches of an upstream node (extra ``torchdata``).
* ``dali_mixup.integrations.timm``: ``mixup_config``, timm's ``Mixup(...)`` arguments as a
  ``MixupConfig`` (no timm needed).

``import dali_mixup`` imports none of these, and this package imports none of its modules: the
frameworks load only when one of them is imported.
"""
