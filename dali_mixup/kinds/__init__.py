"""The sample kinds, each a declared thing the one front builds (``dali_mixup.front``).

A kind module declares ``KIND`` (``front.Kind``: its name, how its options and source resolve into
a spec, its default ``validate``) and a spec class whose ``graph()`` is its DALI graph with named
outputs, ``fields()`` how each output mixes, ``diagnose(error)`` which file is bad, ``config()``
what a saved state must match; ``create_*`` is ``build_loader(kind, ...)`` with the kind's
arguments spelled out.

* ``image``: classification from folders, file lists or WebDataset shards (``image_pipeline``,
  ``image_scan``);
* ``audio``: clips to waveforms or log-mels;
* ``detection``: COCO boxes and masks;
* ``volume``: 3-D ``.npy`` volumes.

Importing this package imports none of them (nor DALI).
"""
