"""Optimizations of a template network, set by a project's [optimize] section.

- ``distill``: knowledge distillation from a teacher (a forest or a bigger template);
- ``prune``: structured pruning (channels / neurons; the graph shrinks) and magnitude
  pruning (zeroed weights; dense int8 kernels gain nothing), both with fine-tuning;
- ``qat``: quantization-aware training on the float graph, ending in the same
  TFLite-spec int8 graph post-training quantization makes;
- ``apply``: the order of the steps inside ``NeuralModel.fit`` and the record that
  ``kiloml run`` writes to metrics.json under ``neural.optimization``.
"""
