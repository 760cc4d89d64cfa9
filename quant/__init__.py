"""spikeforge quant/: quantization-aware SNN training that exports golden integer models.

Modules: :mod:`quant.arch` (the ``--arch`` grammar and shapes, pure Python), :mod:`quant.layers`
(fake quantization per layer or channel, surrogates, IF/LIF dynamics), :mod:`quant.qnet` (layer
parameters, folded BatchNorm, quantization), :mod:`quant.net` (the spiking network of dense, conv2d
and maxpool2d layers, rate or STCB with learned temporal kernels, BPTT or the spike-train-level
gradient, and its exact quantized forward), :mod:`quant.tsc` (the clipped-floor ANN of temporal
switch coding), :mod:`quant.export` (to ``golden.Model``),
:mod:`quant.exactness` (bit-exact agreement with golden), :mod:`quant.train` (CLI) and
:mod:`quant.bench` (the target configurations). See docs/quant.md.
"""
