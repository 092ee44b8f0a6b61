"""Does OHEM pay? Train the bundled Mask R-CNN per variant and seed, score every run, compare paired by seed.

Run from the repo root: ``python -m benchmarks.quality [--quick] [--seeds 5] [--write]``.

Modules, in the order a run flows through them:

- :mod:`.variants`: the budgets and the variant registry (which config attributes each variant
  sets, whether this checkout supports it); run configs come from
  :func:`mrcnn_ohem.runner.train_eval.make_config`.
- :mod:`.runs`: one run (train, probe the miner, evaluate) in a subprocess or in process, the
  side-by-side step timing, and the seed-major schedule.
- :mod:`.metrics`: COCOeval AP/AR (through :mod:`mrcnn_ohem.datasets.coco_eval`) and the
  false-positive proposals on distractors.
- :mod:`.mining`: what the miner keeps: kept negatives on distractors, near objects or on the
  background.
- :mod:`.stats`: means, sample std, paired differences with a 95% t-interval.
- :mod:`.report`: the RESULTS.md section, the goal verdicts and the plots.
- :mod:`.cli`: the command line.
"""
