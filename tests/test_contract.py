"""The loader contract every sample kind keeps (issue 21), one test per promise, parametrised over
the kinds of ``build_loader`` (``kinds.KINDS``: a new kind joins by adding an entry there).

Promises: under torchrun (one node of 2 ranks, and two "nodes" of 2 on 127.0.0.1) the shards
follow the global rank, the ranks see disjoint samples covering the set once per epoch and run
the same number of batches, and ``device_id`` is the local rank; a state round trip mid-epoch
gives the batches the uninterrupted run gives (in-process, and across processes); a state from
another kind or configuration is refused naming the difference, a damaged one as damaged; a bad
file is named with ``on_error="raise"`` and left out (one warning) with ``"skip"``; FILL / DROP /
PARTIAL as DALI documents them; same seed, same batches across processes; shard options checked.

The torchrun and multi-process cases launch once for all kinds (session fixtures running
``contract_worker.py``); the tests then read each kind's result.
"""

import base64
import json
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from contract_worker import TORCHRUN_SEED
from kinds import KINDS, corrupt, loader_options, sample_ids

WORKER = Path(__file__).with_name("contract_worker.py")
N_SMALL = 7  # the policy example's size: batch 2 -> 3 full batches and one of 1
N_LARGE = 14  # torchrun: 2 shards of 7, 4 shards of 3, 4, 3, 4 (batch 2: 4 and 2 batches a rank)
SAVE_AFTER = 3  # the cross-process resume saves after this batch (mid first epoch)
TIMEOUT = 420


@pytest.fixture(params=list(KINDS))
def kind(request):
    return request.param


def build(kind, data, **overrides):
    from dali_mixup import build_loader

    return build_loader(kind, **loader_options(kind, data, **overrides))


def epoch_ids(kind, loader, epochs=2):
    """Per epoch, the sample ids of each batch: ``[[ids of batch 0, ids of batch 1, ...], ...]``."""
    return [[sample_ids(kind, b[0]) for b in loader] for _ in range(epochs)]


@pytest.fixture(scope="session")
def datasets(tmp_path_factory):
    """``get(kind, n)``: ``n`` samples of ``kind``, written once per session (read-only use)."""
    cache = {}

    def get(kind, n=N_SMALL):
        if (kind, n) not in cache:
            cache[kind, n] = KINDS[kind].make(str(tmp_path_factory.mktemp(f"{kind}{n}")), n)
        return cache[kind, n]

    return get


@pytest.fixture(scope="session")
def large(datasets, tmp_path_factory):
    """Every kind's ``N_LARGE`` samples, and the JSON file the worker reads them from."""
    data = {k: datasets(k, N_LARGE) for k in KINDS}
    path = tmp_path_factory.mktemp("contract") / "data.json"
    path.write_text(json.dumps({k: {"options": d.options, "ids": d.ids, "files": d.files} for k, d in data.items()}))
    return data, path


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        [str(WORKER.parent), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))


def _run_all(commands):
    """Start every command at once, wait for all; ``[(returncode, output tail)]``."""
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
             for c in commands]
    results = []
    for p in procs:
        try:
            out, _ = p.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
            out = f"(killed after {TIMEOUT} s)\n{out}"
        results.append((p.returncode, out[-6000:]))
    return results


def _torchrun(large, tmp_path_factory, name, nodes):
    _, data_json = large
    out = tmp_path_factory.mktemp(name)
    port = free_port()
    commands = [[sys.executable, "-m", "torch.distributed.run", f"--nnodes={nodes}", f"--node_rank={node}",
                 "--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={port}",
                 str(WORKER), "torchrun", str(data_json), str(out)] for node in range(nodes)]
    return out, _run_all(commands)


@pytest.fixture(scope="session")
def one_node(large, tmp_path_factory):
    """``torchrun --nproc_per_node=2`` once for every kind."""
    return _torchrun(large, tmp_path_factory, "torchrun-1x2", 1)


@pytest.fixture(scope="session")
def two_nodes(large, tmp_path_factory):
    """Two torchrun "nodes" of 2 processes each on 127.0.0.1, launched at once, for every kind."""
    return _torchrun(large, tmp_path_factory, "torchrun-2x2", 2)


def rank_results(run, kind, world):
    out, procs = run
    said = "\n".join(f"--- torchrun {i} (exit {rc}):\n{text}" for i, (rc, text) in enumerate(procs))
    results = []
    for r in range(world):
        path = out / kind / f"rank{r}.json"
        if not path.exists():
            pytest.fail(f"rank {r} wrote no result for {kind!r}\n{said}")
        res = json.loads(path.read_text())
        if "error" in res:
            pytest.fail(f"{kind!r} on rank {r}:\n{res['error']}")
        results.append(res)
    return results


def check_shards_by_rank(kind, ranks, data):
    world = len(ranks)
    lengths = [r["len"] for r in ranks]
    assert len(set(lengths)) == 1, f"len(loader) differs between ranks: {lengths}"
    for e in range(2):
        batches = [r["epochs"][e]["batches"] for r in ranks]
        assert batches == [lengths[0]] * world, f"epoch {e}: batches per rank {batches}, len(loader) {lengths[0]}"
        ids = [r["epochs"][e]["ids"] for r in ranks]
        for a in range(world):
            for b in range(a + 1, world):
                both = set(ids[a]) & set(ids[b])
                assert not both, f"epoch {e}: ranks {a} and {b} both read samples {sorted(both)}"
        seen = sorted(i for rank in ids for i in rank)
        assert seen == data.ids, f"epoch {e}: the ranks together read {seen}, not every sample once ({data.ids})"
    for r, res in enumerate(ranks):  # the shard of global rank r: built with shard_id=r by hand
        explicit = build(kind, data, seed=TORCHRUN_SEED, shard_id=r, num_shards=world)
        shard = sorted(i for b in explicit for i in sample_ids(kind, b[0]))
        del explicit
        assert sorted(res["epochs"][0]["ids"]) == shard, (
            f"rank {r} read {sorted(res['epochs'][0]['ids'])}, not shard {r} of {world} ({shard})")


def check_options_by_rank(ranks):
    for res in ranks:
        env, opts = res["env"], res["options"]
        assert opts is not None, "the loader has no .options (the resolved shared options)"
        assert opts["device_id"] == env["LOCAL_RANK"], f"device_id {opts['device_id']} is not LOCAL_RANK {env}"
        assert opts["shard_id"] == env["RANK"], f"shard_id {opts['shard_id']} is not the global RANK {env}"
        assert opts["num_shards"] == env["WORLD_SIZE"], f"num_shards {opts['num_shards']} is not WORLD_SIZE {env}"
        assert opts["device"] == "cpu"


# --------------------------------------------------------------------------- 1, 2: torchrun


@pytest.mark.slow
def test_torchrun_two_ranks_read_disjoint_shards_covering_the_set(kind, one_node, large):
    check_shards_by_rank(kind, rank_results(one_node, kind, 2), large[0][kind])


@pytest.mark.slow
def test_torchrun_two_ranks_options_follow_the_ranks(kind, one_node):
    check_options_by_rank(rank_results(one_node, kind, 2))


@pytest.mark.slow
def test_torchrun_two_nodes_shards_follow_the_global_rank(kind, two_nodes, large):
    check_shards_by_rank(kind, rank_results(two_nodes, kind, 4), large[0][kind])


@pytest.mark.slow
def test_torchrun_two_nodes_options_follow_the_global_rank(kind, two_nodes):
    ranks = rank_results(two_nodes, kind, 4)
    assert [r["env"]["LOCAL_RANK"] for r in ranks] == [0, 1, 0, 1]  # the harness: two nodes of two
    check_options_by_rank(ranks)


# ------------------------------------------------------------------------------- 3: resume


def same_batch(a, b):
    """Bitwise equal batch dicts: the same keys, dtypes, shapes and bytes."""
    assert sorted(a) == sorted(b)
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, torch.Tensor):
            assert isinstance(y, torch.Tensor) and x.dtype == y.dtype and x.shape == y.shape, key
            bits = lambda t: t.detach().cpu().contiguous().reshape(-1).view(torch.uint8)  # noqa: E731
            assert torch.equal(bits(x), bits(y)), f"{key} differs"
        else:
            assert x == y, key


def _copy(batch):
    return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def test_state_round_trip_mid_epoch_gives_the_uninterrupted_batches(kind, datasets):
    data = datasets(kind)
    ref = build(kind, data, seed=3)
    per_epoch = len(ref)
    expected = [_copy(b[0]) for _ in range(2) for b in ref]
    del ref
    assert len(expected) == 2 * per_epoch
    for stop in (2, per_epoch + 1):  # mid first epoch, mid second epoch
        first, got = build(kind, data, seed=3), []
        while len(got) < stop:  # a for loop per epoch, left at batch ``stop``
            for b in first:
                got.append(_copy(b[0]))
                if len(got) == stop:
                    break
        for g, want in zip(got, expected):
            same_batch(g, want)
        state = json.loads(json.dumps(first.state_dict()))  # JSON-serialisable, as saved to disk
        del first
        resumed = build(kind, data, seed=3)
        resumed.load_state_dict(state)
        rest = [_copy(b[0]) for _ in range(2 - stop // per_epoch) for b in resumed]
        assert len(rest) == len(expected) - stop, f"resumed after {stop}: {len(rest)} batches follow"
        for r, want in zip(rest, expected[stop:]):
            same_batch(r, want)


# ------------------------------------------------------------------------------ 4: refusals


def _state_after_one_batch(kind, data, **overrides):
    loader = build(kind, data, **overrides)
    next(iter(loader))
    return json.loads(json.dumps(loader.state_dict()))


def test_state_from_another_kind_is_refused(kind, datasets):
    from dali_mixup import StateError

    names = list(KINDS)
    other = names[(names.index(kind) + 1) % len(names)]
    state = _state_after_one_batch(other, datasets(other))
    loader = build(kind, datasets(kind))
    with pytest.raises(StateError) as e:
        loader.load_state_dict(state)
    assert other in str(e.value) and kind in str(e.value), f"the message does not name both kinds: {e.value}"


def test_state_from_another_configuration_is_refused(kind, datasets):
    from dali_mixup import StateError

    option, saved, loaded = KINDS[kind].config
    data = datasets(kind)
    state = _state_after_one_batch(kind, data, **{option: saved})
    loader = build(kind, data, **{option: loaded})
    with pytest.raises(StateError) as e:
        loader.load_state_dict(state)
    assert option in str(e.value), f"the message does not name {option!r}: {e.value}"


def _truncate_checkpoint(state):
    raw = base64.b64decode(state["dali"][0])
    state["dali"][0] = base64.b64encode(raw[: len(raw) // 2]).decode("ascii")


def _garbage_sampler(state):
    assert state["samplers"], "a loader with mixup has a sampler entry"
    state["samplers"][0] = {"garbage": "not a sampler state", "block": [1, 2, 3]}


@pytest.mark.parametrize("damage", [_truncate_checkpoint, _garbage_sampler], ids=["checkpoint", "sampler"])
def test_damaged_state_is_refused_as_damaged(kind, datasets, damage):
    from dali_mixup import BadDataError, StateError

    data = datasets(kind)
    state = _state_after_one_batch(kind, data)
    damage(state)
    loader = build(kind, data)
    with pytest.raises(Exception) as e:
        loader.load_state_dict(state)
    assert isinstance(e.value, StateError) and not isinstance(e.value, BadDataError), (
        f"{type(e.value).__name__} (not a StateError): {e.value}")
    assert "damaged" in str(e.value), e.value


# ------------------------------------------------------------------------------ 5: bad file


def test_bad_file_is_named_with_raise(kind, tmp_path):
    data = KINDS[kind].make(str(tmp_path), N_SMALL)
    bad = corrupt(data.files[data.ids[3]])
    with pytest.raises(Exception) as e:  # up front, or at the batch that meets it
        loader = build(kind, data, on_error="raise")
        epoch_ids(kind, loader)
    assert os.path.basename(bad) in str(e.value), f"{type(e.value).__name__} does not name {bad}: {e.value}"


def test_bad_file_is_left_out_with_skip(kind, tmp_path):
    data = KINDS[kind].make(str(tmp_path), N_SMALL)
    bad_id = data.ids[3]
    bad = corrupt(data.files[bad_id])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loader = build(kind, data, on_error="skip")
        epochs = epoch_ids(kind, loader)
    named = [str(w.message) for w in caught if os.path.basename(bad) in str(w.message)]
    assert len(named) == 1, f"warnings naming {bad}: {named}"
    for e, batches in enumerate(epochs):
        seen = sorted(i for b in batches for i in b)
        assert seen == [i for i in data.ids if i != bad_id], f"epoch {e} served {seen}"


# ---------------------------------------------------------------------------- 6: policies

POLICY_EXAMPLE = {  # DALI's LastBatchPolicy on 7 samples in order, batch 2, one shard
    "PARTIAL": [[0, 1], [2, 3], [4, 5], [6]],
    "DROP": [[0, 1], [2, 3], [4, 5]],
    "FILL": [[0, 1], [2, 3], [4, 5], [6, 6]],
}


@pytest.mark.parametrize("policy", list(POLICY_EXAMPLE))
def test_last_batch_policy_as_dali_documents(kind, datasets, policy):
    data = datasets(kind, N_SMALL)
    ordered = KINDS[kind].ordered
    loader = build(kind, data, mixup=None, last_batch_policy=policy, **(ordered or {}))
    want = [[data.ids[i] for i in batch] for batch in POLICY_EXAMPLE[policy]]
    assert len(loader) == len(want)
    for e, got in enumerate(epoch_ids(kind, loader)):
        if ordered is not None:
            assert got == want, f"epoch {e}: {got}"
            continue
        assert [len(b) for b in got] == [len(b) for b in want], f"epoch {e}: {got}"
        flat = [i for b in got for i in b]
        if policy == "FILL":
            assert got[-1][-1] == got[-1][0] and sorted(flat[:-1]) == data.ids, f"epoch {e}: {got}"
        elif policy == "DROP":
            assert len(set(flat)) == len(flat) == 6 and set(flat) < set(data.ids), f"epoch {e}: {got}"
        else:
            assert sorted(flat) == data.ids, f"epoch {e}: {got}"


# --------------------------------------------------------------- 7: same seed, other process


@pytest.fixture(scope="session")
def seeded_runs(large, tmp_path_factory):
    """Two processes at once hash every batch of two epochs (seed 5), one saving its state after
    ``SAVE_AFTER`` batches; then a third resumes from those states and hashes what follows."""
    _, data_json = large
    out = tmp_path_factory.mktemp("seeded")
    states = out / "states.json"
    base = [sys.executable, str(WORKER), "hashes", str(data_json)]
    procs = _run_all([base + [str(out / "a.json"), "--save-after", str(SAVE_AFTER), str(states)],
                      base + [str(out / "b.json")]])
    if states.exists():
        procs += _run_all([base + [str(out / "c.json"), "--load", str(states)]])
    return out, procs


def _seeded(run, name, kind):
    out, procs = run
    path = out / f"{name}.json"
    if not path.exists():
        pytest.fail(f"process {name} wrote nothing:\n" + "\n".join(t for _, t in procs))
    res = json.loads(path.read_text())[kind]
    if "error" in res:
        pytest.fail(f"{kind!r} in process {name}:\n{res['error']}")
    return res


@pytest.mark.slow
def test_same_seed_same_batches_across_processes(kind, seeded_runs):
    a, b = _seeded(seeded_runs, "a", kind), _seeded(seeded_runs, "b", kind)
    assert len(a["digests"]) == 2 * a["len"]
    assert a["digests"] == b["digests"]


@pytest.mark.slow
def test_state_round_trip_across_processes(kind, seeded_runs):
    a, c = _seeded(seeded_runs, "a", kind), _seeded(seeded_runs, "c", kind)
    assert c["digests"] == a["digests"][SAVE_AFTER:]


# ---------------------------------------------------------------------------- 8: shard checks


@pytest.mark.parametrize("option, shards", [("num_shards", dict(shard_id=0, num_shards=N_SMALL + 1)),
                                            ("shard_id", dict(shard_id=2, num_shards=2))],
                         ids=["num_shards_above_samples", "shard_id_out_of_range"])
def test_shard_options_checked(kind, datasets, option, shards):
    with pytest.raises(ValueError, match=option):
        loader = build(kind, datasets(kind), **shards)
        next(iter(loader))


def test_as_many_shards_as_samples(kind, datasets):
    data = datasets(kind)
    loader = build(kind, data, shard_id=N_SMALL - 1, num_shards=N_SMALL)
    first, second = epoch_ids(kind, loader)
    assert first == [[data.ids[-1]]]  # the last shard: the last sample
    assert len(second) == 1 and len(second[0]) == 1  # DALI moves on to another shard each epoch
