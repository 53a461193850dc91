"""snnTorch import: the same inputs through snnTorch and through our event
backend give the same spike trains, for every supported neuron and option.

Agreement rule: both sides run in float64 with float32-representable weights
(torch's init, then ``.double()``). Spike trains must be identical; the test
first asserts that every snnTorch pre-fire membrane is farther than
``MARGIN = 1e-9`` from threshold (rounding differences between the two
summation orders are ~1e-15, so closer calls could legitimately flip; snnTorch
fires on ``>``, ours on ``>=``), and for ``reset_delay=False`` with subtract,
that no post-reset membrane exceeds threshold (snnTorch's double-reset term,
see ``snn.interop.snntorch``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
st = pytest.importorskip("snntorch")
from snntorch import utils
from torch import nn

import snn
from snn.interop.snntorch import SnnTorchImportError

MARGIN = 1e-9
T = 40


def run_snntorch(net, x):
    """Step ``net`` over ``x[T, B, ...]`` in float64; returns the last
    module's outputs ``[T, ...]`` and, per step, the pre-fire margins and
    post-reset membranes of every neuron module."""
    utils.reset(net)
    out, margins, post = [], [], []
    with torch.no_grad():
        for t in range(x.shape[0]):
            h = x[t]
            for m in net:
                if isinstance(m, (st.Leaky, st.Synaptic)):
                    h, pre, after = _neuron_step(m, h)
                    margins.append(float((pre - m.threshold).abs().min()))
                    if not m.reset_delay and int(m.reset_mechanism_val) == 0:  # immediate subtract
                        post.append(float((after - m.threshold).max()))
                else:
                    h = m(h.double())
            out.append(h if not isinstance(h, tuple) else h[1])
    return torch.stack(out).numpy(), min(margins), max(post, default=-math.inf)


def _neuron_step(m, x):
    """One step of an snnTorch neuron; returns its output, the pre-fire
    membrane (before any reset of this step) and the stored membrane."""
    mem_prev = m.mem.clone() if m.mem.shape == x.shape else torch.zeros_like(x)
    out = m(x)
    spk = (out[0] if isinstance(out, tuple) else out).double()
    if m.reset_delay or int(m.reset_mechanism_val) == 2:
        pre = m.mem.clone()
    elif int(m.reset_mechanism_val) == 0:
        pre = m.mem + spk * m.threshold
    else:
        drive = m.syn if isinstance(m, st.Synaptic) else x
        pre = torch.where(spk > 0, m.beta.clamp(0, 1) * mem_prev + drive, m.mem)
    result = (spk, m.mem.clone()) if isinstance(out, tuple) else spk
    return result, pre, m.mem.clone()


def check_agreement(net, x, in_shape=None, check_post_reset=False, **kwargs):
    net = net.double()
    ref, margin, post = run_snntorch(net, x)
    assert margin > MARGIN, f"a membrane came within {margin:.2e} of threshold: choose another seed"
    if check_post_reset:
        assert post <= 0.0, "a post-reset membrane exceeds threshold: outside the exact regime"
    ours = snn.from_snntorch(net, in_shape, **kwargs)
    flat = x.reshape(x.shape[0], x.shape[1], -1).numpy()
    result = ours.run(analog=flat)
    spikes = result.spikes(-1)
    np.testing.assert_array_equal(spikes, ref.reshape(spikes.shape))
    assert spikes.sum() > 0, "no spikes: the test would be vacuous"
    return ours, result


def leaky(**kw):
    return st.Leaky(init_hidden=True, **kw)


def synaptic(**kw):
    return st.Synaptic(init_hidden=True, **kw)


CASES = {
    "leaky-subtract-immediate": (leaky, {"beta": 0.8, "threshold": 0.7, "reset_delay": False}, 0.6),
    "leaky-zero-delayed": (leaky, {"beta": 0.8, "threshold": 0.7, "reset_mechanism": "zero"}, 0.6),
    "leaky-zero-immediate": (
        leaky,
        {"beta": 0.9, "threshold": 0.5, "reset_mechanism": "zero", "reset_delay": False},
        0.6,
    ),
    "if-subtract-delayed": (leaky, {"beta": 1.0, "threshold": 0.7}, 0.6),
    "synaptic-subtract-immediate": (
        synaptic,
        {"alpha": 0.6, "beta": 0.8, "threshold": 2.0, "reset_delay": False},
        0.6,
    ),
    "synaptic-zero-immediate": (
        synaptic,
        {"alpha": 0.6, "beta": 0.8, "threshold": 1.0, "reset_mechanism": "zero", "reset_delay": False},
        0.6,
    ),
    "synaptic-subtract-delayed-beta1": (synaptic, {"alpha": 0.5, "beta": 1.0, "threshold": 1.5}, 0.4),
    # snnTorch zeroes mem in the step after a spike (syn keeps integrating): our refractory step
    "synaptic-zero-delayed": (
        synaptic,
        {"alpha": 0.6, "beta": 0.8, "threshold": 1.0, "reset_mechanism": "zero"},
        0.6,
    ),
    "leaky-none": (leaky, {"beta": 0.7, "threshold": 1.0, "reset_mechanism": "none"}, 0.6),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_dense_stack_matches_snntorch(case):
    make, kw, scale = CASES[case]
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(20, 30), make(**kw), nn.Linear(30, 10), make(**kw))
    x = torch.rand(T, 4, 20, dtype=torch.float64) * scale
    subtract = kw.get("reset_mechanism", "subtract") == "subtract"
    immediate_subtract = subtract and not kw.get("reset_delay", True)
    ours, _ = check_agreement(net, x, check_post_reset=immediate_subtract)
    assert type(ours.layers[0].neuron) is snn.Neuron


def test_learned_parameters_are_taken_at_their_trained_values():
    torch.manual_seed(2)
    lif = leaky(beta=0.9, threshold=1.0, learn_beta=True, learn_threshold=True, reset_delay=False)
    with torch.no_grad():
        lif.beta.fill_(1.3)  # snnTorch clamps beta to [0, 1] in the forward pass
        lif.threshold.fill_(1.25)
    net = nn.Sequential(nn.Linear(12, 16), lif)
    ours, _ = check_agreement(net, torch.rand(T, 3, 12, dtype=torch.float64) * 0.3, check_post_reset=True)
    neuron = ours.layers[0].neuron
    assert (neuron.beta, neuron.threshold) == (1.0, pytest.approx(1.25))


def test_conv_pool_flatten_stack_matches_snntorch():
    torch.manual_seed(3)
    kw = {"beta": 0.85, "threshold": 0.6, "reset_delay": False}
    net = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        leaky(**kw),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3),
        leaky(**kw),
        nn.AvgPool2d(2),
        leaky(beta=1.0, threshold=0.6),
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(6, 5),
        leaky(**kw),
    )
    net.eval()
    x = torch.rand(T, 3, 2, 10, 10, dtype=torch.float64)
    ours, result = check_agreement(net, x, in_shape=(2, 10, 10))
    kinds = [type(layer).__name__ for layer in ours.layers]
    assert kinds == ["Conv2d", "Conv2d", "Conv2d", "AvgPool2d", "Linear"]
    assert result.spikes(1).sum() > 0  # the max-pool OR layer passes spikes


def test_membrane_readout_matches_snntorch_membrane():
    torch.manual_seed(4)
    net = nn.Sequential(
        nn.Linear(10, 20),
        leaky(beta=0.8, threshold=1.0, reset_delay=False),
        nn.Linear(20, 3),
        st.Leaky(beta=0.9, reset_mechanism="none", init_hidden=True, output=True),
    ).double()
    x = torch.rand(T, 2, 10, dtype=torch.float64) * 0.5
    mem, margin, post = run_snntorch(net, x)
    assert margin > MARGIN and post <= 0.0
    ours = snn.from_snntorch(net, membrane_readout=True)
    assert ours.layers[-1].neuron.threshold == math.inf
    result = ours.run(analog=x.numpy())
    assert result.spikes(0).sum() > 0
    np.testing.assert_allclose(result.membrane, mem[-1], rtol=0, atol=1e-12)


# -- graphs: recurrent modules and the delayed subtraction ------------------------------


def run_snntorch_modules(net, x):
    """Step ``net`` (float64) over 0/1 spikes ``x[T, B, n]``; returns per
    neuron module its spikes ``[T, B, n]``, the smallest distance of a
    pre-fire membrane to threshold (recorded from the module's own ``fire``)
    and the largest post-reset membrane minus threshold of modules with an
    immediate subtraction. Spikes are cast to the membrane's dtype (float64):
    snnTorch's float32 spikes would stop a float64 recurrent module."""
    neurons = [m for m in net if isinstance(m, (st.Leaky, st.Synaptic, st.RLeaky, st.RSynaptic))]
    margins, post = [], [-math.inf]
    for m in neurons:
        fire = type(m).fire.__get__(m)

        def recording(mem, m=m, fire=fire):
            margins.append(float((mem - m.threshold).abs().min()))
            return fire(mem).to(mem.dtype)  # snnTorch's Heaviside returns float32 spikes

        m.fire = recording
    utils.reset(net)
    spikes = [[] for _ in neurons]
    try:
        with torch.no_grad():
            for t in range(x.shape[0]):
                h = x[t]
                for m in net:
                    h = m(h)
                    h = h[0] if isinstance(h, tuple) else h
                    if m in neurons:
                        spikes[neurons.index(m)].append(h.numpy().copy())
                        if not m.reset_delay and int(m.reset_mechanism_val) == 0:
                            post.append(float((m.mem - m.threshold).max()))
    finally:
        for m in neurons:
            del m.fire
    return [np.stack(s) for s in spikes], min(margins), max(post)


def check_graph_agreement(net, x, **kwargs):
    """snnTorch and the imported Graph give the same spikes in every neuron
    module / population, on the event path (every mode) and the reference."""
    net = net.double()
    ref, margin, post = run_snntorch_modules(net, x)
    assert margin > MARGIN, f"a membrane came within {margin:.2e} of threshold: choose another seed"
    assert post <= 0.0, "a post-reset membrane exceeds threshold: outside the exact regime"
    g = snn.from_snntorch(net, **kwargs)
    assert isinstance(g, snn.Graph)
    spikes = x.reshape(x.shape[0], x.shape[1], -1).numpy().astype(np.uint8)
    neuron_types = (st.Leaky, st.Synaptic, st.RLeaky, st.RSynaptic)
    names = [f"{k}:{type(m).__name__}" for k, m in enumerate(net) if isinstance(m, neuron_types)]
    for run in ({}, {"mode": "clock"}, {"backend": "reference"}):
        result = g.run(x.shape[0], inputs={"input": spikes}, **run)
        for name, expected in zip(names, ref, strict=True):
            np.testing.assert_array_equal(result.spikes(name), expected.reshape(result.spikes(name).shape))
    assert all(r.sum() > 0 for r in ref), "a silent module: the test would be vacuous"
    return g


def rleaky(**kw):
    return st.RLeaky(init_hidden=True, **kw)


def rsynaptic(**kw):
    return st.RSynaptic(init_hidden=True, **kw)


RECURRENT = {
    "rleaky-subtract-delayed": (rleaky, {"beta": 0.8, "threshold": 0.7}),
    "rleaky-subtract-immediate": (rleaky, {"beta": 0.85, "threshold": 1.0, "reset_delay": False}),
    "rleaky-zero-delayed": (rleaky, {"beta": 0.8, "threshold": 0.7, "reset_mechanism": "zero"}),
    "rleaky-zero-immediate": (
        rleaky,
        {"beta": 0.9, "threshold": 0.6, "reset_mechanism": "zero", "reset_delay": False},
    ),
    "rleaky-none": (rleaky, {"beta": 0.7, "threshold": 0.5, "reset_mechanism": "none"}),
    "rleaky-if-delayed": (rleaky, {"beta": 1.0, "threshold": 1.25}),
    "rsynaptic-subtract-delayed-beta1": (rsynaptic, {"alpha": 0.5, "beta": 1.0, "threshold": 1.5}),
    "rsynaptic-zero-delayed": (
        rsynaptic,
        {"alpha": 0.6, "beta": 0.8, "threshold": 1.0, "reset_mechanism": "zero"},
    ),
    "rsynaptic-none": (
        rsynaptic,
        {"alpha": 0.5, "beta": 0.7, "threshold": 1.0, "reset_mechanism": "none"},
    ),
}


@pytest.mark.parametrize("case", sorted(RECURRENT))
@pytest.mark.parametrize("wiring", ["all_to_all", "one_to_one"])
def test_recurrent_stack_matches_snntorch(case, wiring):
    make, kw = RECURRENT[case]
    torch.manual_seed(5)
    if wiring == "all_to_all":
        first, second = make(linear_features=24, **kw), make(linear_features=6, **kw)
    else:  # V: one value per neuron, then a scalar
        first = make(all_to_all=False, V=torch.linspace(-0.5, 0.5, 24), **kw)
        second = make(all_to_all=False, V=-0.25, **kw)
    net = nn.Sequential(nn.Linear(16, 24), first, nn.Linear(24, 6), second)
    x = (torch.rand(T, 3, 16) < 0.3).double()
    g = check_graph_agreement(net, x)
    rec = [p for p in g.projections if p.name.endswith(".rec")]
    assert [(p.source.name, p.delays) for p in rec] == [
        ("1:" + type(first).__name__, [1]),
        ("3:" + type(second).__name__, [1]),
    ]


def test_delayed_subtraction_chain_is_a_graph_matching_snntorch():
    """Leaky's default (reset_delay=True, subtract) with beta < 1: a 'none'
    population and a self-projection of weight -threshold, delay 1."""
    torch.manual_seed(6)
    net = nn.Sequential(
        nn.Linear(12, 20),
        leaky(beta=0.9, threshold=0.75),
        nn.Linear(20, 5),
        leaky(beta=0.8, threshold=0.5),
    )
    g = check_graph_agreement(net, (torch.rand(T, 4, 12) < 0.4).double())
    pop = g["1:Leaky"]
    assert pop.neuron.reset == "none" and pop.neuron.beta == pytest.approx(0.9)
    reset = next(p for p in g.projections if p.name == "1:Leaky.reset")
    assert reset.source is pop and reset.target is pop and reset.delays == [1]
    assert reset.n_synapses == pop.n and np.all(reset.groups[0][3] == np.float32(-0.75))


def test_recurrent_conv_and_pooling_match_snntorch():
    """RLeaky with a recurrent nn.Conv2d (a convolution of the population onto
    itself, delay 1) after a convolution, then max pooling and a dense RLeaky."""
    torch.manual_seed(7)
    net = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        rleaky(beta=0.8, threshold=0.6, conv2d_channels=3, kernel_size=3),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(3 * 3 * 3, 5),
        rleaky(beta=0.85, threshold=0.5, linear_features=5),
    )
    g = check_graph_agreement(net, (torch.rand(T, 2, 1, 6, 6) < 0.3).double(), in_shape=(1, 6, 6))
    kinds = {p.name: p.kind for p in g.projections}
    assert kinds["1:RLeaky.rec"] == kinds["input->1:RLeaky"] == "conv"  # never expanded
    assert g["1:RLeaky"].shape == (3, 6, 6) and kinds["5:RLeaky.rec"] == "csr"


def test_recurrent_bias_enters_every_step():
    """The recurrent nn.Linear's bias is added at every step (snnTorch adds
    rec(0) = bias at step 0 too): a population with no input fires from it."""
    torch.manual_seed(8)
    lif = rleaky(beta=0.5, threshold=1.0, linear_features=3, reset_delay=False)
    with torch.no_grad():
        lif.recurrent.weight.zero_()
        lif.recurrent.bias.copy_(torch.tensor([0.75, 0.25, 0.0]))
    fc = nn.Linear(2, 3)
    with torch.no_grad():
        fc.weight.zero_()
        fc.bias.copy_(torch.tensor([0.0, 0.5, 0.625]))
    g = snn.from_snntorch(nn.Sequential(fc, lif))
    np.testing.assert_array_equal(g["1:RLeaky"].bias, [0.75, 0.75, 0.625])
    check_graph_agreement(nn.Sequential(fc, lif), torch.zeros(T, 1, 2, dtype=torch.float64))


def test_chains_stay_networks():
    net = nn.Sequential(nn.Linear(4, 4), leaky(beta=0.9, reset_delay=False), nn.Linear(4, 2), leaky(beta=1.0))
    assert isinstance(snn.from_snntorch(net), snn.Network)


# -- refusals --------------------------------------------------------------------------

REFUSED = {
    "synaptic delayed subtract, beta < 1": (
        lambda: nn.Sequential(nn.Linear(4, 4), synaptic(alpha=0.5, beta=0.9)),
        "feed the synaptic current of a CubaLIF",
    ),
    "rsynaptic delayed subtract, beta < 1": (
        lambda: nn.Sequential(
            nn.Linear(4, 4), st.RSynaptic(alpha=0.5, beta=0.9, linear_features=4, init_hidden=True)
        ),
        "module 1 \\(RSynaptic\\).*reset_delay=False",
    ),
    "rsynaptic immediate reset": (
        lambda: nn.Sequential(
            nn.Linear(4, 4),
            st.RSynaptic(alpha=0.5, beta=1.0, linear_features=4, init_hidden=True, reset_delay=False),
        ),
        "fails in snnTorch itself",
    ),
    "recurrent size": (
        lambda: nn.Sequential(nn.Linear(4, 5), st.RLeaky(beta=0.9, linear_features=4, init_hidden=True)),
        "does not map the layer's 5 neurons onto themselves",
    ),
    "one-to-one V size": (
        lambda: nn.Sequential(
            nn.Linear(4, 5), st.RLeaky(beta=0.9, all_to_all=False, V=torch.ones(3), init_hidden=True)
        ),
        "V has 3 values but the layer has 5 neurons",
    ),
    "inhibition": (
        lambda: nn.Sequential(nn.Linear(4, 4), leaky(beta=0.9, inhibition=True, reset_delay=False)),
        "inhibition",
    ),
    "per-neuron beta": (
        lambda: nn.Sequential(
            nn.Linear(4, 4), leaky(beta=torch.tensor([0.5, 0.6, 0.7, 0.8]), reset_delay=False)
        ),
        "per-neuron beta",
    ),
    "graded spikes": (
        lambda: nn.Sequential(nn.Linear(4, 4), leaky(beta=0.9, graded_spikes_factor=2.0, reset_delay=False)),
        "graded_spikes_factor",
    ),
    "pooling currents": (
        lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), leaky(beta=1.0)),
        "module 1 \\(MaxPool2d\\).*currents of module 0",
    ),
    "unknown neuron": (
        lambda: nn.Sequential(nn.Linear(4, 4), st.Alpha(alpha=0.6, beta=0.5, init_hidden=True)),
        "Alpha",
    ),
    "ends in currents": (
        lambda: nn.Sequential(nn.Linear(4, 4), leaky(beta=1.0), nn.Linear(4, 2)),
        "module 2 \\(Linear\\) is not followed by a spiking neuron",
    ),
    "two neurons in a row": (
        lambda: nn.Sequential(nn.Linear(4, 4), leaky(beta=1.0), leaky(beta=1.0)),
        "must follow",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refusals_name_the_module_and_the_fix(case):
    build, pattern = REFUSED[case]
    with pytest.raises(SnnTorchImportError, match=pattern):
        snn.from_snntorch(build(), in_shape=(1, 8, 8) if "pooling" in case else None)


def test_custom_module_is_refused():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            return self.fc(x)

    with pytest.raises(SnnTorchImportError, match="nn.Sequential"):
        snn.from_snntorch(Net())


def test_conv_needs_in_shape():
    with pytest.raises(SnnTorchImportError, match="in_shape"):
        snn.from_snntorch(nn.Sequential(nn.Conv2d(1, 2, 3), leaky(beta=1.0)))


# -- hardening (issue 15): wrong shapes and values name the module; the model is not changed ----


def _conv_model():
    return nn.Sequential(nn.Conv2d(1, 2, 3), leaky(beta=0.9, reset_delay=False))


@pytest.mark.parametrize(
    "in_shape,error,match",
    [
        (5, TypeError, "in_shape must be a sequence"),
        ((1, 8.5, 8), SnnTorchImportError, "positive integers"),  # was rounded down to 8 silently
        ((1, -8, 8), SnnTorchImportError, "positive integers"),
        ((1, True, 8), SnnTorchImportError, "positive integers"),
        ((1, 2, 2), SnnTorchImportError, r"module 0 \(Conv2d\): the kernel does not fit"),
        ((3, 8, 8), SnnTorchImportError, r"module 0 \(Conv2d\): weight must have shape"),
    ],
)
def test_wrong_in_shapes_are_refused_naming_the_module(in_shape, error, match):
    with pytest.raises(error, match=match):
        snn.from_snntorch(_conv_model(), in_shape)


def test_nan_parameters_are_named_and_the_model_is_not_changed():
    model = nn.Sequential(nn.Linear(4, 3), leaky(beta=0.9, reset_delay=False))
    with torch.no_grad():
        model[1].beta.fill_(math.nan)
    with pytest.raises(SnnTorchImportError, match=r"module 1 \(Leaky\): beta is NaN"):
        snn.from_snntorch(model)
    model = nn.Sequential(nn.Linear(4, 3), leaky(beta=0.9, reset_delay=False))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [m.training for m in model.modules()]
    snn.from_snntorch(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert flags == [m.training for m in model.modules()]
