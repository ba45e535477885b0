"""Automatic honesty checks on an evaluation: gradient masking, saturation, paired statistics.

* :mod:`.checker` -- :class:`Checker`, the model checks run over a model's curves;
* :mod:`.saturation` -- how many samples a model classifies with p(y) = 1.0 or with a vanishing input gradient;
* :mod:`.stats` -- Wilson intervals and paired tests used by the checks and the tables.
"""
