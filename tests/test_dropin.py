"""Drop-in conformance: ``DALIMixupIterator(mixup=None)`` against DALI's own
``DALIClassificationIterator``, over two identical CPU pipelines.

Modelled on what DALI's iterator tests check (``test_fw_iterators.py``: epoch accounting over
shards, ``stick_to_shard``, ``pad_last_batch``, the three last-batch policies, ``len()`` equal to
the batches served, auto-reset, external sources that end an epoch with ``StopIteration``,
``prepare_first_batch``; ``test_dali_checkpointing_fw_iterators.py``: restoring a pipeline from
``iterator.checkpoints()`` mid-epoch continues where the iterator was), but here DALI's iterator
is the oracle: for every case both are driven the same way and must agree batch for batch —

* the data tensors are equal (dtype, shape, values);
* ``label.argmax(1)`` and ``label_index`` are DALI's labels; the targets are one-hot (N, C);
* the batch sizes, ``len()`` and the number of batches in each of several epochs are equal;
* the checkpoints taken mid-epoch are equal, and restored iterators serve the same batches;
* where DALI refuses a configuration, ours refuses it with the same exception and message.

Samples are tiny raw files (8 bytes whose first byte is the sample's index), read by
``fn.readers.file`` from a file list that also gives each sample its class id (some ≥ 48: the
ASCII digits a uint8 label must not be read as); one case decodes real JPEGs. Where ours differs
from DALI by mistake, the case is to be marked ``xfail(strict=True)`` with the reason, so the
suite stays green and the difference visible (none is, today). Deliberate differences (labels
that are not one integer class id per sample) are tested as such.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("nvidia.dali")

import nvidia.dali.fn as fn  # noqa: E402
import nvidia.dali.types as types  # noqa: E402
from nvidia.dali.pipeline import Pipeline  # noqa: E402
from nvidia.dali.plugin.base_iterator import LastBatchPolicy  # noqa: E402
from nvidia.dali.plugin.pytorch import DALIClassificationIterator  # noqa: E402

from dali_mixup import DALIMixupIterator  # noqa: E402

# size= without reader_name is deprecated by DALI (a warning per iterator made): tested on purpose
pytestmark = pytest.mark.filterwarnings("ignore:Please set `reader_name`")

FILL, DROP, PARTIAL = LastBatchPolicy.FILL, LastBatchPolicy.DROP, LastBatchPolicy.PARTIAL
READER = "Reader"
C = 64  # classes
# class ids of samples 0..12: ASCII digits (48..57) among them, and small ids too
CLASS_IDS = [51, 52, 53, 57, 0, 7, 3, 48, 49, 50, 63, 55, 12]
MAX_SAMPLES = len(CLASS_IDS)
MAX_BATCHES = 64  # an epoch longer than this is a runaway iterator


# -- data --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lists(tmp_path_factory):
    """``{n: file list of the first n samples}`` for n in 7..13."""
    root = tmp_path_factory.mktemp("dropin")
    paths = []
    for i in range(MAX_SAMPLES):
        p = root / f"s{i:02d}.bin"
        p.write_bytes(bytes([i] + [(i * 37 + j * 11) % 256 for j in range(7)]))
        paths.append(str(p))
    out = {}
    for n in range(7, MAX_SAMPLES + 1):
        lst = root / f"list{n}.txt"
        lst.write_text("".join(f"{paths[i]} {CLASS_IDS[i]}\n" for i in range(n)))
        out[n] = str(lst)
    return out


def _labels(label, label_dtype, label_shape):
    if label_dtype != "int32":
        label = fn.cast(label, dtype={"uint8": types.UINT8, "int64": types.INT64}[label_dtype])
    if label_shape == "N":
        label = fn.reshape(label, shape=[])
    return label


def reader_pipe(file_list, batch_size, shard_id=0, num_shards=1, *, pad=False, stick=False,
                label_dtype="int32", label_shape="N1", checkpointing=False, checkpoint=None,
                shuffle=False, prefetch_queue_depth=1, exec_dynamic=None):
    extra = {} if exec_dynamic is None else {"exec_dynamic": exec_dynamic}
    pipe = Pipeline(batch_size=batch_size, num_threads=1, device_id=None, prefetch_queue_depth=prefetch_queue_depth,
                    seed=1234, enable_checkpointing=checkpointing, checkpoint=checkpoint, **extra)
    with pipe:
        data, label = fn.readers.file(file_list=file_list, shard_id=shard_id, num_shards=num_shards,
                                      pad_last_batch=pad, stick_to_shard=stick, random_shuffle=shuffle,
                                      initial_fill=4, name=READER)
        pipe.set_outputs(data, _labels(label, label_dtype, label_shape))
    return pipe


# -- the comparison ------------------------------------------------------------------------------
def construct(cls, pipes, **kw):
    """(iterator, None) or (None, the exception the constructor raised)."""
    if cls is DALIMixupIterator:
        kw = dict(kw, mixup=None, num_classes=C)
    try:
        return cls(pipes, **kw), None
    except Exception as e:  # compared with DALI's below
        return None, e


def length(it):
    try:
        return len(it)
    except Exception as e:
        return type(e)


def one_epoch(it, use_next=False):
    """The batches of one epoch, copied (``[[{name: tensor}] per pipeline] per batch``): as a
    ``for`` loop takes them (``iter()``, then ``__next__``), or by ``it.next()`` alone."""
    out = []
    if not use_next:
        it = iter(it)
    while len(out) <= MAX_BATCHES:
        try:
            batch = it.next() if use_next else next(it)
        except StopIteration:
            return out
        out.append([{k: v.clone() for k, v in d.items()} for d in batch])
    raise AssertionError(f"{type(it).__name__}: no end of epoch after {MAX_BATCHES} batches")


def check_batch(theirs, ours, where):
    assert len(ours) == len(theirs), f"{where}: {len(ours)} pipelines' outputs, DALI {len(theirs)}"
    for p, (t, o) in enumerate(zip(theirs, ours)):
        at = f"{where}, pipeline {p}"
        assert all(o[k].device == t[k].device for k in t), \
            f"{at}: devices {[(k, o[k].device, t[k].device) for k in t]} (ours, DALI)"
        t = {k: v.cpu() for k, v in t.items()}
        o = {k: v.cpu() for k, v in o.items()}
        assert {"data", "label", "label_index", "lam", "perm"} <= set(o), f"{at}: keys {sorted(o)}"
        assert o["data"].dtype == t["data"].dtype and o["data"].shape == t["data"].shape, \
            f"{at}: data {o['data'].dtype}{tuple(o['data'].shape)}, DALI {t['data'].dtype}{tuple(t['data'].shape)}"
        assert torch.equal(o["data"], t["data"]), f"{at}: data differ"
        n = t["data"].shape[0]
        ids = t["label"].reshape(n, -1)[:, 0].to(torch.int64) if n else torch.zeros(0, dtype=torch.int64)
        assert o["label"].shape == (n, C) and o["label"].dtype == torch.float32, \
            f"{at}: label {o['label'].dtype}{tuple(o['label'].shape)}"
        if n:
            assert torch.equal(o["label"].argmax(1), ids), \
                f"{at}: label.argmax {o['label'].argmax(1).tolist()}, DALI's labels {ids.tolist()}"
            assert torch.equal(o["label"].sum(1), torch.ones(n)) and torch.equal(o["label"].amax(1), torch.ones(n)), \
                f"{at}: targets are not one-hot"
        assert torch.equal(o["label_index"], ids), f"{at}: label_index {o['label_index'].tolist()}, DALI {ids.tolist()}"
        assert torch.equal(o["lam"], torch.ones(n)), f"{at}: lam {o['lam'].tolist()} with mixup=None"


def compare_epochs(make_pipes, epochs, *, use_next=False, reset=None, **kw):
    """Build DALI's iterator and ours over twin pipelines; run ``epochs`` epochs of each and
    compare. ``reset``: call ``reset()`` after each epoch (default: unless ``auto_reset``)."""
    theirs, t_err = construct(DALIClassificationIterator, make_pipes(), **kw)
    ours, o_err = construct(DALIMixupIterator, make_pipes(), **kw)
    if t_err is not None or o_err is not None:  # a refusal: the same exception and message
        assert (type(o_err), str(o_err)) == (type(t_err), str(t_err)), f"DALI raised {t_err!r}; ours {o_err!r}"
        return None
    if reset is None:
        reset = kw.get("auto_reset") in (False, None, "no")
    assert length(ours) == length(theirs), f"len(): ours {length(ours)}, DALI {length(theirs)}"
    assert (ours.size, ours.batch_size) == (theirs.size, theirs.batch_size), \
        f"size, batch_size: ours {(ours.size, ours.batch_size)}, DALI {(theirs.size, theirs.batch_size)}"
    sizes = []
    for e in range(epochs):
        assert length(ours) == length(theirs), f"epoch {e}: len() ours {length(ours)}, DALI {length(theirs)}"
        a, b = one_epoch(theirs, use_next), one_epoch(ours, use_next)
        assert len(b) == len(a), f"epoch {e}: ours served {len(b)} batches, DALI {len(a)}"
        for i, (t, o) in enumerate(zip(a, b)):
            check_batch(t, o, f"epoch {e}, batch {i}")
        sizes.append([[d["data"].shape[0] for d in batch] for batch in a])
        if reset:
            theirs.reset()
            ours.reset()
    return sizes


# -- reader_name: policies × padding × shards × stick_to_shard × pipelines ----------------------
# (samples, batch): shard sizes multiples of the batch or not, for 1, 2, 3 shards
#   (12, 3): 12 | 6 6 | 4 4 4      (10, 3): 10 | 5 5 | 3 3 4 (the empty PARTIAL batch)
#   (9, 3): all multiples          (7, 2): 7 | 3 4 | 2 2 3
#   (13, 4): 13 | 6 7 | 4 4 5 (one shard a multiple, the largest not, batch 4)
DATA = [(12, 3), (10, 3), (9, 3), (7, 2), (13, 4)]


def reader_cases():
    for n, bs in DATA:
        for shards in (1, 2, 3):
            for policy in (FILL, DROP, PARTIAL):
                for pad in (False, True):
                    sticks = (False,) if shards == 1 else (False, True)
                    for stick in sticks:
                        # one pipeline per shard, or (some data sets) one pipeline reading the last shard
                        pipes = (1,) if shards == 1 else ((shards, 1) if (n, bs) in ((10, 3), (7, 2)) else (shards,))
                        for n_pipes in pipes:
                            yield pytest.param(n, bs, shards, policy, pad, stick, n_pipes,
                                               id=f"n{n}-b{bs}-s{shards}-{policy.name}-{'pad' if pad else 'nopad'}"
                                                  f"-{'stick' if stick else 'rot'}-p{n_pipes}")


@pytest.mark.parametrize("n,bs,shards,policy,pad,stick,n_pipes", list(reader_cases()))
def test_reader_name_matrix(lists, n, bs, shards, policy, pad, stick, n_pipes):
    first = 0 if n_pipes == shards else shards - 1

    def make():
        ps = [reader_pipe(lists[n], bs, first + i, shards, pad=pad, stick=stick) for i in range(n_pipes)]
        return ps if n_pipes > 1 else ps[0]

    # enough epochs for a rotating pipeline to visit every shard twice (as DALI's tests do)
    compare_epochs(make, max(3, 2 * shards), reader_name=READER, last_batch_policy=policy)


@pytest.mark.parametrize("explicit_reset", [True, False], ids=["reset", "no-reset"])
@pytest.mark.parametrize("auto_reset", [True, "yes", False, "no"])
def test_reader_name_auto_reset(lists, auto_reset, explicit_reset):
    """With or without ``reset()`` after each epoch (without it, and no auto-reset, a ``for``
    loop's ``iter()`` starts the next epoch)."""
    def make():
        return [reader_pipe(lists[10], 3, i, 3) for i in range(3)]

    sizes = compare_epochs(make, 4, reader_name=READER, last_batch_policy=FILL, auto_reset=auto_reset,
                           reset=explicit_reset)
    assert sizes is not None


@pytest.mark.parametrize("policy", [FILL, DROP, PARTIAL], ids=lambda p: p.name)
def test_reset_mid_epoch_is_ignored_as_dali(lists, policy):
    """DALI ignores ``reset()`` before the end of an epoch (with a warning): so does ours."""
    kw = dict(reader_name=READER, last_batch_policy=policy)
    theirs = DALIClassificationIterator([reader_pipe(lists[11], 3, i, 2) for i in range(2)], **kw)
    ours = DALIMixupIterator([reader_pipe(lists[11], 3, i, 2) for i in range(2)], **kw, num_classes=C)
    for it in (theirs, ours):
        next(it)
        it.reset()
    for e in range(3):
        a, b = one_epoch(theirs), one_epoch(ours)
        assert len(a) == len(b), f"epoch {e}: ours {len(b)} batches, DALI {len(a)}"
        for i, (t, o) in enumerate(zip(a, b)):
            check_batch(t, o, f"epoch {e}, batch {i}")
        theirs.reset()
        ours.reset()


def test_prebuilt_pipelines(lists):
    """Pipelines built (as DALI's tests do) before the iterator is made."""
    def make():
        pipes = [reader_pipe(lists[10], 3, i, 3, stick=True) for i in range(3)]
        for p in pipes:
            p.build()
        return pipes

    compare_epochs(make, 3, reader_name=READER, last_batch_policy=FILL)


# -- size=: the legacy epoch accounting ---------------------------------------------------------
def size_cases():
    for n, bs, shards in [(12, 3, 1), (10, 3, 1), (10, 3, 2), (7, 2, 3)]:
        for policy in (FILL, DROP, PARTIAL):
            for pad in (False, True):
                for which in ("shard", "total"):
                    if shards == 1 and which == "total":
                        continue
                    yield pytest.param(n, bs, shards, policy, pad, which,
                                       id=f"n{n}-b{bs}-s{shards}-{policy.name}-{'pad' if pad else 'nopad'}-{which}")


@pytest.mark.parametrize("n,bs,shards,policy,pad,which", list(size_cases()))
def test_size_matrix(lists, n, bs, shards, policy, pad, which):
    """``size=`` instead of ``reader_name``: the reader's shard size or the whole set's, and
    ``last_batch_padded`` passed to the iterator (matching the reader's ``pad_last_batch``)."""
    size = n // shards if which == "shard" else n

    def make():
        ps = [reader_pipe(lists[n], bs, i, shards, pad=pad) for i in range(shards)]
        return ps if shards > 1 else ps[0]

    compare_epochs(make, 3, size=size, last_batch_policy=policy, last_batch_padded=pad)


def test_size_with_last_batch_padded_not_matching_the_reader(lists):
    def make():
        return reader_pipe(lists[10], 3, pad=False)

    compare_epochs(make, 3, size=10, last_batch_policy=PARTIAL, last_batch_padded=True)


# -- options: prepare_first_batch, next() vs __next__, fill_last_batch, dynamic_shape -----------
@pytest.mark.parametrize("prepare_first_batch", [True, False])
@pytest.mark.parametrize("policy", [FILL, DROP, PARTIAL], ids=lambda p: p.name)
def test_prepare_first_batch(lists, prepare_first_batch, policy):
    def make():
        return [reader_pipe(lists[10], 3, i, 3) for i in range(3)]

    compare_epochs(make, 3, reader_name=READER, last_batch_policy=policy, prepare_first_batch=prepare_first_batch,
                   auto_reset=True)


def test_next_method(lists):
    def make():
        return [reader_pipe(lists[7], 2, i, 2) for i in range(2)]

    compare_epochs(make, 3, use_next=True, reader_name=READER, last_batch_policy=PARTIAL)


@pytest.mark.parametrize("fill_last_batch", [True, False])
def test_deprecated_fill_last_batch(lists, fill_last_batch):
    """DALI's deprecated ``fill_last_batch`` (FILL or PARTIAL), with DALI's warning from each."""
    # the warning is raised by the constructor: checked per iterator
    for cls in (DALIClassificationIterator, DALIMixupIterator):
        extra = {"num_classes": C} if cls is DALIMixupIterator else {}
        with pytest.warns(Warning, match="fill_last_batch"):
            cls(reader_pipe(lists[10], 3), reader_name=READER, fill_last_batch=fill_last_batch, **extra)
    with pytest.warns(Warning, match="fill_last_batch"):
        sizes = compare_epochs(lambda: reader_pipe(lists[10], 3), 2, reader_name=READER,
                               fill_last_batch=fill_last_batch)
    assert sizes[0] == [[3], [3], [3], [3 if fill_last_batch else 1]]  # FILL or PARTIAL


def test_positional_arguments_as_dali(lists):
    """DALI's positional order: pipelines, size, reader_name, auto_reset, fill_last_batch,
    dynamic_shape, last_batch_padded, last_batch_policy, prepare_first_batch."""
    args = (-1, READER, True, None, False, False, PARTIAL, False)
    theirs = DALIClassificationIterator(reader_pipe(lists[11], 4), *args)
    ours = DALIMixupIterator(reader_pipe(lists[11], 4), *args, num_classes=C)
    for _ in range(2):
        a, b = one_epoch(theirs), one_epoch(ours)
        assert [x[0]["data"].shape[0] for x in a] == [x[0]["data"].shape[0] for x in b] == [4, 4, 3]
        for t, o in zip(a, b):
            check_batch(t, o, "positional")


def test_shuffled_reader(lists):
    """The reader's shuffling is the pipeline's: the same seed, the same order in both."""
    def make():
        return [reader_pipe(lists[13], 4, i, 2, shuffle=True) for i in range(2)]

    compare_epochs(make, 3, reader_name=READER, last_batch_policy=PARTIAL)


@pytest.mark.parametrize("depth", [1, 3])
@pytest.mark.parametrize("exec_dynamic", [True, False], ids=["dynamic-executor", "legacy-executor"])
def test_executors_and_prefetch_depth(lists, exec_dynamic, depth):
    """Either executor, a deeper prefetch queue; the tensors handed out stay valid while later
    batches are produced (held, not copied, and compared after two epochs)."""
    def make():
        return [reader_pipe(lists[11], 3, i, 2, prefetch_queue_depth=depth, exec_dynamic=exec_dynamic)
                for i in range(2)]

    compare_epochs(make, 2, reader_name=READER, last_batch_policy=PARTIAL)
    kw = dict(reader_name=READER, last_batch_policy=PARTIAL, auto_reset=True)
    for it in (DALIClassificationIterator(make(), **kw), DALIMixupIterator(make(), **kw, num_classes=C)):
        held = [(d["data"], d["data"].clone()) for _ in range(2) for batch in it for d in batch]
        assert all(torch.equal(x, copy) for x, copy in held), f"{type(it).__name__}: a handed-out tensor changed"


def test_base_class_does_not_call_the_subclass_next(lists):
    """DALI's check that preparing the first batch does not go through a subclass' ``__next__``
    (a wrapper of ours sees each batch once, the first one included)."""
    class Wrapper(DALIMixupIterator):
        def __init__(self, *a, **kw):
            self.allow, self.calls = False, 0
            super().__init__(*a, **kw)

        def __next__(self):
            assert self.allow, "__next__ called while the iterator was being made"
            self.calls += 1
            return super().__next__()

    ours = Wrapper(reader_pipe(lists[9], 3), reader_name=READER, num_classes=C)
    theirs = DALIClassificationIterator(reader_pipe(lists[9], 3), reader_name=READER)
    ours.allow = True
    a, b = one_epoch(theirs), one_epoch(ours)
    assert ours.calls == len(b) + 1 == len(a) + 1  # + the call that ended the epoch
    for t, o in zip(a, b):
        check_batch(t, o, "wrapper")


@pytest.mark.parametrize("dtype,shape", [(np.float16, (2, 3)), (np.float64, ()), (np.int32, (1, 2, 2, 2)),
                                         (np.bool_, (4,)), (np.int16, (2, 1, 1))],
                         ids=["float16-2d", "float64-scalar", "int32-4d", "bool-1d", "int16-3d"])
def test_data_of_any_dtype_and_rank(dtype, shape):
    """``data`` is handed out as DALI produced it, whatever its dtype and rank."""
    def make():
        state = {"i": 0}

        def source():
            if state["i"] == 2:
                state["i"] = 0
                raise StopIteration
            state["i"] += 1
            return ([np.full(shape, k + state["i"], dtype) for k in range(3)],
                    [np.array([CLASS_IDS[k]], np.int32) for k in range(3)])

        return source_pipe(source, 3)

    compare_epochs(make, 2)


# -- label dtypes and shapes ---------------------------------------------------------------------
@pytest.mark.parametrize("label_shape", ["N1", "N"])
@pytest.mark.parametrize("label_dtype", ["int32", "uint8", "int64"])
def test_label_dtypes_and_shapes(lists, label_dtype, label_shape):
    """uint8 class ids 48..57 are classes 48..57 (not ASCII digits); (N,) and (N, 1) alike."""
    def make():
        return [reader_pipe(lists[13], 4, i, 2, label_dtype=label_dtype, label_shape=label_shape)
                for i in range(2)]

    compare_epochs(make, 2, reader_name=READER, last_batch_policy=PARTIAL)


def label_pipe(values, dtype=np.int32):
    """External-source labels as given (``values``: one row per sample, per batch of 2)."""
    batches = [values[i:i + 2] for i in range(0, len(values), 2)]
    state = {"i": 0}

    def source():
        if state["i"] == len(batches):
            state["i"] = 0
            raise StopIteration
        rows = batches[state["i"]]
        state["i"] += 1
        return [np.full((2,), k, np.uint8) for k in range(len(rows))], [np.asarray(r, dtype) for r in rows]

    return source_pipe(source, 2)


@pytest.mark.parametrize("values,dtype,exc,match", [
    ([[1.0], [2.0], [3.0], [4.0]], np.float32, TypeError, "integer class ids.*float32"),
    ([[1, 2], [3, 4], [5, 6], [7, 8]], np.int32, ValueError, r"\(2, 2\)"),
], ids=["float-labels", "N-by-2-labels"])
def test_documented_divergence_labels_that_are_not_class_ids(values, dtype, exc, match):
    """Not drop-in by design: DALI hands these labels through; one-hot targets need one integer
    class id per sample, so ours refuses them naming the dtype or the shape (issue 18, 23)."""
    theirs = DALIClassificationIterator(label_pipe(values, dtype))
    assert len(one_epoch(theirs)) == 2
    with pytest.raises(exc, match=match):
        one_epoch(DALIMixupIterator(label_pipe(values, dtype), num_classes=C))


# -- external sources: StopIteration ends the epoch (size=-1) or size= counts it ----------------
class Batches:
    """A batch-mode source: ``iters`` batches per epoch (the last one ``last`` samples), then
    ``StopIteration``; samples are (2, 3) uint8 arrays of their global index, labels uint8 ids."""

    def __init__(self, batch_size, iters=None, last=None):  # iters None: endless
        self.bs, self.iters, self.last = batch_size, iters, last or batch_size
        self.i = 0

    def __call__(self):
        if self.i == self.iters:
            self.i = 0
            raise StopIteration
        n = self.last if self.iters is not None and self.i == self.iters - 1 else self.bs
        k = [self.i * self.bs + j for j in range(n)]
        self.i += 1
        data = [np.full((2, 3), v, np.uint8) for v in k]
        labels = [np.array([CLASS_IDS[v % MAX_SAMPLES]], np.uint8) for v in k]
        return data, labels


def source_pipe(source, batch_size):
    pipe = Pipeline(batch_size=batch_size, num_threads=1, device_id=None, prefetch_queue_depth=1)
    with pipe:
        data, label = fn.external_source(source=source, num_outputs=2)
        pipe.set_outputs(data, label)
    return pipe


@pytest.mark.parametrize("prepare_first_batch", [True, False])
@pytest.mark.parametrize("auto_reset", [True, False])
@pytest.mark.parametrize("iters,last", [(1, None), (3, None), (3, 1)], ids=["1full", "3full", "3short"])
def test_external_source_stop_iteration(iters, last, auto_reset, prepare_first_batch):
    def make():
        return source_pipe(Batches(3, iters, last), 3)

    sizes = compare_epochs(make, 3, auto_reset=auto_reset, prepare_first_batch=prepare_first_batch)
    assert sizes == [[[3]] * (iters - 1) + [[last or 3]]] * 3


@pytest.mark.parametrize("policy", [FILL, DROP, PARTIAL], ids=lambda p: p.name)
@pytest.mark.parametrize("size", [6, 7, 8])
def test_external_source_with_size(policy, size):
    """An endless source counted by ``size=`` over two pipelines."""
    def make():
        return [source_pipe(Batches(2), 2) for _ in range(2)]

    compare_epochs(make, 3, size=size, last_batch_policy=policy, auto_reset=True)


# -- what DALI refuses, ours refuses the same way ------------------------------------------------
def refusal_cases():
    yield pytest.param(lambda L: reader_pipe(L[10], 3), dict(size=0), id="size-0")
    yield pytest.param(lambda L: [reader_pipe(L[10], 3, i, 2) for i in range(2)], dict(), id="two-pipes-no-size")
    yield pytest.param(lambda L: reader_pipe(L[10], 3), dict(size=10, reader_name=READER), id="size-and-reader")
    yield pytest.param(lambda L: reader_pipe(L[10], 3), dict(reader_name=READER, last_batch_padded=True),
                       id="reader-and-last_batch_padded")
    yield pytest.param(lambda L: [reader_pipe(L[10], 3, 0, 2), reader_pipe(L[10], 2, 1, 2)],
                       dict(reader_name=READER), id="batch-sizes-differ")
    yield pytest.param(lambda L: [reader_pipe(L[10], 3, 0, 2, pad=True), reader_pipe(L[10], 3, 1, 2)],
                       dict(reader_name=READER), id="pad-differs")
    yield pytest.param(lambda L: reader_pipe(L[10], 3), dict(reader_name="NoSuchReader"), id="unknown-reader")
    yield pytest.param(lambda L: reader_pipe(L[10], 3), dict(reader_name=READER, auto_reset="maybe"),
                       id="auto_reset-bad")
    yield pytest.param(lambda L: reader_pipe(L[10], 3), dict(reader_name=READER, last_batch_policy="partial"),
                       id="policy-as-string")
    yield pytest.param(lambda L: [reader_pipe(L[7], 5, i, 3) for i in range(3)],
                       dict(reader_name=READER, last_batch_policy=DROP), id="drop-batch-over-shard")


def outputs_pipe(file_list, k):
    pipe = Pipeline(batch_size=3, num_threads=1, device_id=None, prefetch_queue_depth=1)
    with pipe:
        data, label = fn.readers.file(file_list=file_list, name=READER)
        pipe.set_outputs(*([data, label, label][:k]))
    return pipe


def more_refusal_cases():
    yield pytest.param(lambda L: outputs_pipe(L[10], 1), dict(reader_name=READER), id="one-output")
    yield pytest.param(lambda L: outputs_pipe(L[10], 3), dict(reader_name=READER), id="three-outputs")


@pytest.mark.parametrize("make,kw", list(refusal_cases()) + list(more_refusal_cases()))
def test_refused_as_dali_refuses(lists, make, kw):
    """The same exception, with DALI's message, from the constructor or the first epoch."""
    def outcome(cls):
        it, err = construct(cls, make(lists), **kw)
        if it is not None:
            try:
                one_epoch(it)
            except Exception as e:
                err = e
        return err if err is None else (type(err), str(err))

    theirs = outcome(DALIClassificationIterator)
    assert theirs is not None, "DALI accepts this case: not a refusal"
    assert outcome(DALIMixupIterator) == theirs


@pytest.mark.parametrize("pad", [False, True])
@pytest.mark.parametrize("policy", [FILL, PARTIAL], ids=lambda p: p.name)
def test_batch_larger_than_the_shard(lists, policy, pad):
    """Batch 5 over shards of 2-3 samples: one short (PARTIAL) or filled batch per shard."""
    def make():
        return [reader_pipe(lists[7], 5, i, 3, pad=pad) for i in range(3)]

    compare_epochs(make, 4, reader_name=READER, last_batch_policy=policy)


# -- checkpointing --------------------------------------------------------------------------------
def ckpt_cases():
    for policy in (FILL, DROP, PARTIAL):
        for shards, n_pipes, n, bs in [(1, 1, 11, 3), (3, 3, 10, 3)]:
            for stop in ((0, 1), (1, 2)):  # (epoch, batches into it)
                for prepare in (True, False):
                    if not prepare and stop != (1, 2):
                        continue
                    yield pytest.param(policy, shards, n_pipes, n, bs, stop, prepare,
                                       id=f"{policy.name}-s{shards}-n{n}-b{bs}-e{stop[0]}i{stop[1]}"
                                          f"{'' if prepare else '-noprep'}")


@pytest.mark.parametrize("policy,shards,n_pipes,n,bs,stop,prepare", list(ckpt_cases()))
def test_checkpoint_restore_mid_epoch(lists, policy, shards, n_pipes, n, bs, stop, prepare):
    """As DALI's checkpointing tests: run into an epoch, take ``checkpoints()`` (ours must equal
    DALI's: reader state and iterator data), restore pipelines from them; ours over the restored
    pipelines serves what DALI's does, and the originals go on alike."""
    def make(checkpoints=None):
        return [reader_pipe(lists[n], bs, i, shards, shuffle=True, checkpointing=True,
                            checkpoint=None if checkpoints is None else checkpoints[i]) for i in range(n_pipes)]

    kw = dict(reader_name=READER, last_batch_policy=policy, auto_reset=True, prepare_first_batch=prepare)
    theirs = DALIClassificationIterator(make(), **kw)
    ours = DALIMixupIterator(make(), **kw, num_classes=C)
    assert len(ours.checkpoints()) == len(theirs.checkpoints()) == n_pipes
    epoch, into = stop
    for _ in range(epoch):
        a, b = one_epoch(theirs), one_epoch(ours)
        assert len(a) == len(b)
    for i in range(into):
        try:
            t = next(theirs)
        except StopIteration:  # this epoch is shorter: the checkpoint is taken at its end
            with pytest.raises(StopIteration):
                next(ours)
            break
        check_batch(t, next(ours), f"before the checkpoint, batch {i}")
    t_cp, o_cp = theirs.checkpoints(), ours.checkpoints()
    assert o_cp == t_cp, "ours' checkpoints (reader state and iterator data) differ from DALI's"

    # the oracle for a restored iterator is DALI's iterator restored from the same checkpoint
    # (with prepare_first_batch=False and the checkpoint at an epoch's end, DALI's restored
    # iterator first serves an empty epoch, which its original does not: DALI's behaviour)
    ours_restored = DALIMixupIterator(make(o_cp), **kw, num_classes=C)
    theirs_restored = DALIClassificationIterator(make(t_cp), **kw)
    assert length(ours_restored) == length(theirs_restored)
    for e in range(3):  # the rest of this epoch, then whole ones
        for t_it, o_it, name in ((theirs, ours, "continued"), (theirs_restored, ours_restored, "restored")):
            a, b = one_epoch(t_it), one_epoch(o_it)
            assert len(b) == len(a), f"{name}, epoch +{e}: ours {len(b)} batches, DALI {len(a)}"
            for i, (t, o) in enumerate(zip(a, b)):
                check_batch(t, o, f"{name}, epoch +{e}, batch {i}")


def es_ckpt_pipe(mode, checkpoint=None, epoch_size=7, batch_size=3):
    """An external source that checkpointing can restore: it reads only DALI's sample/batch info
    (epoch, index) and ends each epoch with ``StopIteration``."""
    def sample(si):
        if si.idx_in_epoch >= epoch_size:
            raise StopIteration
        k = si.idx_in_epoch + 16 * si.epoch_idx
        return np.full((2, 2), k, np.uint8), np.array([CLASS_IDS[k % MAX_SAMPLES]], np.int32)

    def batch(bi):
        if bi.iteration * batch_size >= epoch_size:
            raise StopIteration
        ks = [bi.iteration * batch_size + j + 16 * bi.epoch_idx for j in range(batch_size)]
        return ([np.full((2, 2), k, np.uint8) for k in ks],
                [np.array([CLASS_IDS[k % MAX_SAMPLES]], np.int32) for k in ks])

    pipe = Pipeline(batch_size=batch_size, num_threads=1, device_id=None, prefetch_queue_depth=1,
                    enable_checkpointing=True, checkpoint=checkpoint)
    with pipe:
        if mode == "sample_info":
            data, label = fn.external_source(source=sample, num_outputs=2, batch=False)
        else:
            data, label = fn.external_source(source=batch, num_outputs=2, batch=True, batch_info=True)
        pipe.set_outputs(data, label)
    return pipe


@pytest.mark.parametrize("iterations", [1, 4])
@pytest.mark.parametrize("mode", ["sample_info", "batch_info"])
def test_checkpoint_external_source(mode, iterations):
    """DALI's external-source checkpointing case: ``iterations`` batches (across epochs ended by
    ``StopIteration``), then checkpoints; restored and original iterators, ours and DALI's."""
    kw = dict(auto_reset=True)
    theirs = DALIClassificationIterator(es_ckpt_pipe(mode), **kw)
    ours = DALIMixupIterator(es_ckpt_pipe(mode), **kw, num_classes=C)
    done = 0
    while done < iterations:
        for t, o in zip(theirs, ours):
            check_batch(t, o, f"batch {done}")
            done += 1
            if done == iterations:
                break
    t_cp, o_cp = theirs.checkpoints(), ours.checkpoints()
    assert o_cp == t_cp
    pairs = [(theirs, ours, "continued"),
             (DALIClassificationIterator(es_ckpt_pipe(mode, t_cp[0]), **kw),
              DALIMixupIterator(es_ckpt_pipe(mode, o_cp[0]), **kw, num_classes=C), "restored")]
    for e in range(3):
        for t_it, o_it, name in pairs:
            a, b = one_epoch(t_it), one_epoch(o_it)
            assert len(b) == len(a), f"{name}, epoch +{e}: ours {len(b)} batches, DALI {len(a)}"
            for i, (t, o) in enumerate(zip(a, b)):
                check_batch(t, o, f"{name}, epoch +{e}, batch {i}")


def test_checkpoints_before_any_batch_and_disabled(lists):
    """``checkpoints()`` before the first batch (the initial ones) restore to the start; without
    ``enable_checkpointing`` both refuse with the same error."""
    kw = dict(reader_name=READER, last_batch_policy=PARTIAL, auto_reset=True)
    theirs = DALIClassificationIterator(reader_pipe(lists[10], 3, checkpointing=True), **kw)
    ours = DALIMixupIterator(reader_pipe(lists[10], 3, checkpointing=True), **kw, num_classes=C)
    restored = DALIMixupIterator(reader_pipe(lists[10], 3, checkpointing=True, checkpoint=ours.checkpoints()[0]),
                                 **kw, num_classes=C)
    for _ in range(2):
        a = one_epoch(theirs)
        for it in (ours, restored):
            b = one_epoch(it)
            assert len(a) == len(b)
            for t, o in zip(a, b):
                check_batch(t, o, "initial checkpoint")
    plain_t = DALIClassificationIterator(reader_pipe(lists[10], 3), **kw)
    plain_o = DALIMixupIterator(reader_pipe(lists[10], 3), **kw, num_classes=C)
    errors = []
    for it in (plain_t, plain_o):
        with pytest.raises(Exception) as info:
            it.checkpoints()
        errors.append(type(info.value))
    assert errors[0] is errors[1]


# -- real images ----------------------------------------------------------------------------------
def test_decoded_jpegs(tmp_path):
    """A decoding pipeline (CPU decoder, resize, CHW float normalisation) over tiny JPEGs."""
    from images import write_image

    lines = []
    for i in range(7):
        p = write_image(str(tmp_path / f"c{i}" / f"{i}.jpg"), 12 + i, 10 + 2 * i, seed=i)
        lines.append(f"{p} {CLASS_IDS[i]}\n")
    (tmp_path / "list.txt").write_text("".join(lines))

    def make():
        pipes = []
        for shard in range(2):
            pipe = Pipeline(batch_size=2, num_threads=1, device_id=None, prefetch_queue_depth=1, seed=7)
            with pipe:
                jpegs, label = fn.readers.file(file_list=str(tmp_path / "list.txt"), shard_id=shard, num_shards=2,
                                               name=READER)
                img = fn.decoders.image(jpegs, device="cpu", output_type=types.RGB)
                img = fn.resize(img, size=(8, 8))
                img = fn.crop_mirror_normalize(img, dtype=types.FLOAT, output_layout="CHW",
                                               mean=[128.0] * 3, std=[64.0] * 3)
                pipe.set_outputs(img, label)
            pipes.append(pipe)
        return pipes

    compare_epochs(make, 3, reader_name=READER, last_batch_policy=PARTIAL)


# -- GPU pipelines (marker ``gpu``: skipped with a reason where there is no CUDA device) ------------
@pytest.mark.gpu
@pytest.mark.parametrize("label_on_gpu", [False, True], ids=["cpu-labels", "gpu-labels"])
@pytest.mark.parametrize("policy", [FILL, PARTIAL], ids=lambda p: p.name)
def test_gpu_pipelines(lists, policy, label_on_gpu):
    """The same comparison with the data (and optionally the labels) moved to the GPU: ours
    hands out CUDA tensors equal to DALI's, on the same devices."""
    def make():
        pipes = []
        for shard in range(3):
            pipe = Pipeline(batch_size=3, num_threads=1, device_id=0, prefetch_queue_depth=1, seed=1234)
            with pipe:
                data, label = fn.readers.file(file_list=lists[10], shard_id=shard, num_shards=3, name=READER)
                pipe.set_outputs(data.gpu(), label.gpu() if label_on_gpu else label)
            pipes.append(pipe)
        return pipes

    compare_epochs(make, 4, reader_name=READER, last_batch_policy=policy)
