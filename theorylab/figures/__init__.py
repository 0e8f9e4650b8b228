"""Figures (layer 1): plain data in, a matplotlib Figure out (Agg backend), one function per figure.

Every axis is labelled with its unit; the caller saves the figure (the claims engine saves a claim's
figures as PNG files).  One module per topic: :mod:`~theorylab.figures.curves` (training curves and
per-seed bars, for any claim), :mod:`~theorylab.figures.grokking`, :mod:`~theorylab.figures.planning`,
:mod:`~theorylab.figures.expressivity`, :mod:`~theorylab.figures.formal`, :mod:`~theorylab.figures.icl`, :mod:`~theorylab.figures.scaling`,
:mod:`~theorylab.figures.emergence`.
"""
