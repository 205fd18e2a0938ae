"""The jobs the CLI, the demo and the benchmarks run on artefact folders, one module per kind of work:
`train` (optionally poisoned), `poison` (a poisoned training set on disk), `evaluate`, `defender` (the
defender's data of an artefact), `repair`, `detect`, `attack` (robust accuracy), `attention` (attention
maps of several models) and `load` (a model as a user names it: folder, weights file or factory).

Differences from the paper and the authors' release: docs/deviations.md#general.
"""
