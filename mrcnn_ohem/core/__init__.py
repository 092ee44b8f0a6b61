"""The neutral layer under both the bundled Mask R-CNN and the OHEM code.

- :mod:`.boxes` -- IoU in float64 as Matterport computes it, and Matterport's box coding (NumPy).
- :mod:`.matching` -- Matterport's anchor-labelling rules, exact to the last bit, without sampling
  (NumPy).
- :mod:`.checks` -- argument checks with one wording ("NAME must be ...; received ...").
- :mod:`.selection` -- exact, gradient-free top-k selection (TensorFlow).
- :mod:`.auxiliary` -- named scalars a loss graph reports to a listening training loop.
- :mod:`.thresholds` -- Matterport's IoU thresholds, named once with their comparisons.
- :mod:`.randomness` -- per-image, thread-local random generators for seeded data loading.

Nothing here reads a ``Config`` or builds a Keras model; nothing here imports the rest of
``mrcnn_ohem``.
"""
