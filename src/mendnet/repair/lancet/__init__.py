"""AI-Lancet: locate the error-inducing (EI) neurons of a misbehaviour, then repair only those weights
(Zhao et al., "AI-Lancet: Locating Error-inducing Neurons to Optimally Repair Deep Neural Networks",
ACM CCS 2021; docs/methods.md §4).

Pieces, one concept each: `companion` (erroneous/companion pairs: a backdoor trigger, or the mask
companion of a general defect), `features` (differential and EI features, weight importance),
`ablation` (the coarse-to-fine progressive ablation search), `locate` (per-layer statistics, layer
choice, votes), `flip` (neuron-flip), `tune` (neuron fine-tuning with a gradient mask and KD), `source`
(where a repair's pairs come from), `repair` (the registry's `lancet-flip` and `lancet-finetune`), `job`
(`mendnet locate`).
"""
