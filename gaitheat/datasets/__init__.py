"""Datasets over the heatmap store: partitions, subject splits and the torch ``Dataset``.

* :mod:`gaitheat.datasets.partition`: the official subject splits (``load_partition``);
* :mod:`gaitheat.datasets.sequences`: ``GaitDataset``, ``split_rows`` and frame selection.
"""
