"""Automatic honesty checks on an evaluation: gradient masking, weak attacks, saturation.

* :mod:`.registry` -- the checks by name (``@register``) and the :class:`Evidence` of one model they read;
* :mod:`.settings` -- :class:`CheckSettings`, eval.yaml's ``checks:`` block as one dataclass;
* :mod:`.model_checks` -- the checks themselves, one function each;
* :mod:`.paired` -- which attacks are alike, the erase budget, the paired (McNemar) verdict;
* :mod:`.checker` -- :func:`run_checks`, every check the settings name, in their order;
* :mod:`.saturation` -- how many samples a model classifies with p(y) = 1.0 or with a vanishing input gradient.
"""
