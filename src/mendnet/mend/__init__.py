"""`mendnet mend`: repair a model whose attack, if any, is unknown, from clean defender data alone
(docs/methods.md §10): scan every label for a trigger, run candidate repairs on one part of the data,
score them on another, keep the best by one rule, or keep the model.

Differences from the paper and the authors' release: docs/deviations.md#mend.
"""
