"""The train/evaluate runner above the model and the datasets (not imported by either).

- :mod:`.cli` -- the shared command line of ``samples/coco/coco.py``, ``samples/shapes/shapes.py``
  and the demo: ``build_parser`` and ``main``.
- :mod:`.train_eval` -- ``make_config``, ``train`` and ``evaluate`` on parsed options.
- :mod:`.callbacks` -- the per-step recorder and progress bar.
- :mod:`.commands` -- the installed command lines ``mrcnn-ohem-coco`` and ``mrcnn-ohem-shapes``.
- :mod:`.settings` -- constants below both: layer presets, CPU settings, run options, OHEM knobs.
"""
