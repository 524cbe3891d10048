"""The differentiable mix (``dali_mixup.autograd.mix``): gradcheck in float64 on the CPU (the
float64 forward is torch ops: the kernels take float16/bfloat16/float32 only), the float32
forward is ``mix_images``' bits, the backward equals torch's autograd of the same formula, any
partner map (not only permutations), CutMix boxes and cuboids; MONAI semantics in
test_volume.py; CUDA under the ``gpu`` marker."""

import pytest
import torch

from dali_mixup import MixupConfig
from dali_mixup.autograd import mix, mix_reference
from dali_mixup.mix import mix_images
from dali_mixup.sampler import MixupParams, MixupSampler


def _params(n, seed=0, perm=None, cut=None, size=None):
    g = torch.Generator().manual_seed(seed)
    lam = torch.rand(n, generator=g)
    perm = torch.randperm(n, generator=g) if perm is None else torch.tensor(perm)
    if cut is None:
        return MixupParams(lam, perm)
    boxes = []
    for i in range(n):
        row = []
        for e in size:
            lo = int(torch.randint(0, e, (1,), generator=g))
            row += [lo, int(torch.randint(lo, e + 1, (1,), generator=g))]
        boxes.append(row)
    return MixupParams(lam, perm, boxes=boxes, cutmix=cut, image_size=size)


CASES = {
    "mixup-perm": ((5, 3), dict()),
    "mixup-shared-partner": ((4, 2, 3), dict(perm=[1, 1, 0, 1])),  # not a permutation
    "mixup-self-partner": ((3, 4), dict(perm=[0, 2, 1])),
    "cutmix-2d": ((3, 1, 4, 5), dict(cut=[True, False, True], size=(4, 5))),
    "cutmix-3d": ((3, 1, 2, 3, 2), dict(cut=[True, True, False], size=(2, 3, 2), perm=[2, 2, 0])),
}


@pytest.mark.parametrize("case", list(CASES))
def test_gradcheck_float64(case):
    shape, kw = CASES[case]
    params = _params(shape[0], **kw)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    layout = "NCDHW" if len(shape) == 5 else "NCHW"
    assert torch.autograd.gradcheck(lambda t: mix(t, params, layout), (x,))
    if case == "mixup-perm":  # the backward is itself differentiable (torch ops on g)
        assert torch.autograd.gradgradcheck(lambda t: mix(t, params, layout), (x,))


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_forward_is_mix_images_and_backward_is_torch_autograd(case, dtype):
    shape, kw = CASES[case]
    params = _params(shape[0], seed=1, **kw)
    layout = "NCDHW" if len(shape) == 5 else "NCHW"
    x = torch.randn(shape).to(dtype).requires_grad_()
    out = mix(x, params, layout)
    assert out.dtype == dtype and out.requires_grad
    assert torch.equal(out.detach().view(torch.uint8) if dtype != torch.float32 else out.detach(),
                       mix_images(x.detach(), params, layout=layout).view(torch.uint8) if dtype != torch.float32
                       else mix_images(x.detach(), params, layout=layout))
    g = torch.randn(shape)
    out.backward(g.to(dtype))
    x64 = x.detach().double().requires_grad_()
    mix_reference(x64, params, layout).backward(g.to(dtype).double())
    tol = 1e-6 if dtype == torch.float32 else 1e-2
    assert x.grad.dtype == dtype
    torch.testing.assert_close(x.grad.double(), x64.grad, rtol=tol, atol=tol)


def test_backward_formula_for_a_permutation():
    """grad_x[k] = λ_k g[k] + (1 − λ_inv[k]) g[inv[k]] (the issue's formula)."""
    n = 6
    params = _params(n, seed=3)
    x = torch.randn(n, 7, requires_grad=True)
    g = torch.randn(n, 7)
    mix(x, params).backward(g)
    lam, perm = params.lam, params.perm
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(n)
    want = lam[:, None] * g + (1 - lam[inv])[:, None] * g[inv]
    torch.testing.assert_close(x.grad, want)


def test_hidden_state_of_a_model_gets_gradients():
    """Manifold mixup: mixing a non-leaf hidden state passes gradients to the layers below."""
    torch.manual_seed(0)
    lin1, lin2 = torch.nn.Linear(5, 8), torch.nn.Linear(8, 3)
    params = MixupSampler(MixupConfig(alpha=1.0), seed=0).sample(6)
    h = mix(torch.relu(lin1(torch.randn(6, 5))), params)
    lin2(h).sum().backward()
    assert lin1.weight.grad is not None and lin1.weight.grad.abs().sum() > 0


def test_embeddings_with_sampler_params_and_identity():
    emb = torch.nn.Embedding(20, 4)
    tokens = torch.randint(0, 20, (3, 5))
    e = emb(tokens)  # (N, L, E)
    ident = MixupParams.identity(3)
    out = mix(e, ident)
    assert torch.equal(out, e)
    out.sum().backward()
    assert torch.equal(emb.weight.grad.sum(), torch.tensor(15.0 * 4))


def test_errors_name_the_problem():
    params = _params(3)
    with pytest.raises(TypeError, match="differentiable"):
        mix(torch.zeros(3, 2, dtype=torch.uint8), params)
    with pytest.raises(TypeError, match="torch.Tensor"):
        mix([1.0, 2.0, 3.0], params)
    with pytest.raises(ValueError, match="batch of 3"):
        mix(torch.zeros(4, 2), params)
    with pytest.raises(ValueError, match="layout must be one of"):
        mix(torch.zeros(3, 2), params, layout="HW")
    cut = _params(3, cut=[True] * 3, size=(4, 5))
    with pytest.raises(ValueError, match="4-D"):
        mix(torch.zeros(3, 20, dtype=torch.float64), cut)


@pytest.mark.gpu
@pytest.mark.parametrize("case", list(CASES))
def test_cuda_forward_and_backward_match_the_cpu(case):
    shape, kw = CASES[case]
    params = _params(shape[0], seed=2, **kw)
    layout = "NCDHW" if len(shape) == 5 else "NCHW"
    x = torch.randn(shape, requires_grad=True)
    xc = x.detach().cuda().requires_grad_()
    g = torch.randn(shape)
    out, outc = mix(x, params, layout), mix(xc, params, layout)
    assert torch.equal(out.detach(), outc.detach().cpu())
    out.backward(g)
    outc.backward(g.cuda())
    torch.testing.assert_close(xc.grad.cpu(), x.grad)


def test_a_lam_that_requires_grad_is_refused_not_detached():
    """Case 22: the mix is differentiable in x only; a λ that requires grad used to be detached
    by MixupParams, leaving lam.grad None without a word."""
    lam = torch.full((4,), 0.3, requires_grad=True)
    with pytest.raises(ValueError, match=r"lam requires grad.*lam\.detach\(\)"):
        MixupParams(lam, torch.tensor([1, 0, 3, 2]))
    params = MixupParams(lam.detach(), torch.tensor([1, 0, 3, 2]))  # the way the error points to
    x = torch.rand(4, 3, requires_grad=True)
    mix(x, params).sum().backward()
    assert torch.allclose(x.grad, torch.ones(4, 3))  # each row: λ of its own + (1 − λ) of its partner's


@pytest.mark.parametrize("case", ["mixup-perm", "cutmix-2d", "cutmix-3d"])
def test_mix_images_on_a_tensor_that_requires_grad_is_the_differentiable_mix(device, case):
    """Case 23: mix_images used to fail inside torch ("functions with out=... arguments don't
    support automatic differentiation"); it now hands over to autograd.mix."""
    shape, kw = CASES[case]
    params = _params(shape[0], **kw)
    layout = "NCDHW" if len(shape) == 5 else "NCHW"
    x = torch.randn(shape, dtype=torch.float32, generator=torch.Generator().manual_seed(1)).to(device).requires_grad_()
    y = mix_images(x, params, layout=layout)
    assert y.grad_fn is not None and torch.equal(y.detach(), mix_images(x.detach(), params, layout=layout))
    g = torch.randn(shape, generator=torch.Generator().manual_seed(2)).to(device)
    (y * g).sum().backward()
    x2 = x.detach().clone().requires_grad_()
    (mix(x2, params, layout) * g).sum().backward()
    assert torch.equal(x.grad, x2.grad)
    with torch.no_grad():  # no graph wanted: the kernel path, out= allowed
        out = torch.empty_like(x)
        assert mix_images(x, params, out=out, layout=layout) is out and not out.requires_grad
    with pytest.raises(TypeError, match=r"out=/dtype= have no gradient.*dali_mixup\.autograd\.mix"):
        mix_images(x, params, out=torch.empty_like(x), layout=layout)
    with pytest.raises(TypeError, match=r"dali_mixup\.autograd\.mix"):
        mix_images(x, params, dtype=torch.bfloat16, layout=layout)
