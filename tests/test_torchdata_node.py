"""``MixupNode`` (``dali_mixup.integrations.torchdata``): a torchdata node that mixes an upstream's
batches with our sampler and kernels, and resumes per torchdata's node protocol.

Behind DALI 2.4's dynamic-mode torchdata nodes (``Reader`` → ``DictMapper`` → ``ToTorch``, on the
CPU here): they keep no state, so the node replays a freshly built chain; behind torchdata's
``IterableWrapper`` (which has a state) the upstream's state is passed on. Data: small JPEGs
written here, one per class.
"""

import dataclasses

import pytest
import torch

pytest.importorskip("torchdata")
pytest.importorskip("nvidia.dali")

import torchdata.nodes as tn  # noqa: E402
from images import unique_class_set  # noqa: E402

from dali_mixup import BatchMixer, Blend, Keep, MixupConfig, MixupSampler, SoftTarget  # noqa: E402
from dali_mixup.integrations.torchdata import MixupNode  # noqa: E402

N = 12  # images, one per class: 3 batches of 4 per epoch


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return unique_class_set(str(tmp_path_factory.mktemp("torchdata") / "data"), n=N, odd=False)


def dali_chain(root, batch_size=4, seed=1):
    """DALI's dynamic-mode torchdata nodes: shuffled file reader, CPU decode, resize to 16x16;
    yields ``(images (N, 16, 16, 3) uint8, labels (N, 1) int32)``."""
    ndd = pytest.importorskip("nvidia.dali.experimental.dynamic")
    from nvidia.dali.experimental.dynamic.pytorch import nodes as dali_nodes

    reader = dali_nodes.Reader(ndd.readers.File, batch_size=batch_size, file_root=root, random_shuffle=True, seed=seed,
                               device="cpu")
    images = dali_nodes.DictMapper(reader, lambda b: ndd.resize(ndd.decoders.image(b, device="cpu"), size=(16, 16)))
    return dali_nodes.ToTorch(images)


CONFIG = MixupConfig(alpha=0.4, cutmix_alpha=1.0, mode="elem", label_smoothing=0.1)


def _node(upstream, config=CONFIG, **kw):
    kw.setdefault("layout", "NHWC")
    return MixupNode(upstream, config, num_classes=N, seed=5, **kw)


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


def test_behind_dali_dynamic_nodes_mixes_with_our_sampler_and_kernels(root):
    raw = next(iter(tn.Loader(dali_chain(root))))
    out = next(iter(tn.Loader(_node(dali_chain(root)))))
    images, labels = raw
    assert images.shape == (4, 16, 16, 3) and images.dtype == torch.uint8
    mixer = BatchMixer({"data": Blend(layout="NHWC"), "label": SoftTarget(N, label_smoothing=0.1)})
    batch = {"data": images, "label": labels}
    want = mixer(batch, mixer.sample(MixupSampler(dataclasses.replace(CONFIG, num_classes=N), seed=5), batch),
                 with_cutmix=True)
    _same(out, want)
    assert out["label"].shape == (4, N) and torch.allclose(out["label"].sum(1), torch.ones(4))
    assert out["label_index"].tolist() == labels.view(-1).tolist()


def test_behind_dali_dynamic_nodes_a_restored_node_gives_the_same_batches(root):
    """DALI's nodes keep no state: the state is replayed on a freshly built chain (new reader)."""
    assert dali_chain(root).state_dict() == {}
    loader = tn.Loader(_node(dali_chain(root)))
    run, state = [], None
    for epoch in range(3):
        for i, batch in enumerate(loader):
            run.append(batch)
            if (epoch, i) == (1, 0):
                state = loader.state_dict()
    assert len(run) == 9 and state["root"]["epochs"] == [[3, True]] and state["root"]["served"] == 1
    assert sorted(sum((b["label_index"].tolist() for b in run[:3]), [])) == list(range(N))
    order = lambda batches: [b["label_index"].tolist() for b in batches]  # noqa: E731
    assert order(run[:3]) != order(run[3:6])  # a new shuffle each epoch: a replay that skipped one would show

    again = tn.Loader(_node(dali_chain(root)))
    again.load_state_dict(state)
    rest = list(again) + list(again)  # the rest of epoch 1, then epoch 2
    assert len(rest) == 5
    for a, b in zip(rest, run[4:]):
        _same(a, b)


def test_behind_a_stateful_node_the_upstream_state_is_passed_on():
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(6, 3, 8, 8, generator=g), torch.randint(0, 5, (6,), generator=g)) for _ in range(5)]
    make = lambda: MixupNode(tn.IterableWrapper(batches), MixupConfig(alpha=1.0, cutmix_alpha=1.0, mode="pair"),  # noqa: E731
                             num_classes=5, seed=11)
    loader = tn.Loader(make())
    first = [b for b in loader]
    it = iter(loader)
    second = [next(it), next(it)]
    state = loader.state_dict()
    second += list(it)
    assert state["root"]["source"] == {"_num_yielded": 2}  # the upstream's own state, no replay
    again = tn.Loader(make())
    again.load_state_dict(state)
    for a, b in zip(list(again), second[2:]):
        _same(a, b)
    assert not torch.equal(first[0]["lam"], second[0]["lam"])  # the sampler moved on between epochs


def test_mixup_switched_off_and_the_config_comes_back_with_the_state():
    batches = [(torch.rand(4, 3, 8, 8), torch.arange(4)) for _ in range(3)]
    node = MixupNode(tn.IterableWrapper(batches), MixupConfig(alpha=0.4, label_smoothing=0.2), num_classes=4, seed=1)
    loader = tn.Loader(node)
    next(iter(loader))
    node.mixup = dataclasses.replace(node.mixup, enabled=False)
    state = loader.state_dict()
    restored = MixupNode(tn.IterableWrapper(batches), MixupConfig(alpha=0.4), num_classes=4, seed=1)
    again = tn.Loader(restored)
    again.load_state_dict(state)
    batch = next(iter(again))
    assert restored.mixup.enabled is False and restored.mixup.label_smoothing == 0.2
    assert torch.equal(batch["data"], batches[1][0]) and torch.equal(batch["lam"], torch.ones(4))
    assert torch.allclose(batch["label"].max(1).values, torch.full((4,), 0.8 + 0.2 / 4))


def test_fields_and_errors():
    batches = [{"image": torch.rand(2, 3, 4, 4), "label": torch.tensor([0, 1]), "id": torch.tensor([7, 8])}]
    fields = {"image": Blend(), "label": SoftTarget(2), "id": Keep()}
    out = next(MixupNode(tn.IterableWrapper(batches), MixupConfig(alpha=1.0), fields=fields))
    assert set(out) >= {"image", "label", "label_index", "id", "lam", "perm"} and out["id"].tolist() == [7, 8]

    with pytest.raises(ValueError, match="needs num_classes"):
        MixupNode(tn.IterableWrapper(batches), MixupConfig())
    with pytest.raises(KeyError, match="fields without a rule: 'id'"):
        next(MixupNode(tn.IterableWrapper(batches), MixupConfig(), fields={"image": Blend(), "label": SoftTarget(2)}))
    with pytest.raises(ValueError, match="yielded 3 values"):
        next(MixupNode(tn.IterableWrapper([(1, 2, 3)]), MixupConfig(), num_classes=2))
    node = MixupNode(tn.IterableWrapper(batches), MixupConfig(), fields=fields, seed=1)
    state = node.state_dict()
    with pytest.raises(ValueError, match="seed=1, this node has seed=2"):
        MixupNode(tn.IterableWrapper(batches), MixupConfig(), fields=fields, seed=2).reset(state)


def test_a_replay_that_does_not_match_is_refused():
    class Stateless(tn.BaseNode):
        def __init__(self, n):
            super().__init__()
            self.n = n

        def reset(self, initial_state=None):
            super().reset(initial_state)
            self.i = 0

        def next(self):
            if self.i >= self.n:
                raise StopIteration
            self.i += 1
            return torch.zeros(2, 3, 4, 4), torch.tensor([0, 1])

        def get_state(self):
            return {}

    node = MixupNode(Stateless(3), MixupConfig(), num_classes=2)
    next(node), next(node)
    state = node.state_dict()
    with pytest.raises(ValueError, match="ended after 1 batches where the saved run read 2"):
        MixupNode(Stateless(1), MixupConfig(), num_classes=2).reset(state)
