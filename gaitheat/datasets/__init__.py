"""Datasets over the heatmap store: partitions, subject splits and the torch ``Dataset``."""
