"""The trainer-callbacks app: ``trainer-callbacks demo`` and ``trainer-callbacks plot``.

It adds those two commands to core's ``trainer-callbacks`` through the ``register_commands`` hook
(:mod:`trainer_callbacks.app.plugin`), like any plugin could, and registers no callback. The demo
(:mod:`.demo`) trains a small text classifier on a ``datasets.Dataset`` (generated,
:mod:`.demo_data`, or a user's local file, :mod:`.text_data`) with every installed plugin and
prints the run summary (:mod:`.summary`); the plots (:mod:`.plotting`) are drawn from a run's
``trainer_state.json``. Importing this package imports neither torch, transformers, datasets nor
matplotlib.
"""
