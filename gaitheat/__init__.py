"""gaitheat: heatmap-based gait recognition (GaitHeat, "Revisiting Pose-based Gait Recognition", ECCV 2024).

Pipeline stages, one module (or subpackage) each: ``video`` -> ``detect`` -> ``track`` -> ``crop`` ->
``pose`` -> ``quality`` -> ``storage`` (+ ``manifest``) -> ``datasets``/``sampling`` -> ``models`` ->
``losses``/``train`` -> ``evaluate``/``metrics`` -> ``gallery``. ``cli`` composes them.

Shape glossary (used in every docstring and at every reshape):

====== ==============================================================
Letter Axis
====== ==============================================================
B      sequences in a batch
T      frames
J      joints (17, COCO order, see ``storage.COCO17_JOINTS``)
S      streams (K part maps + 1 global map)
C      channels
H, W   height, width (heatmaps are 64 x 48)
P      horizontal strips of the embedding (16)
D      embedding dimension (256)
K      identities (classes)
N, Q   gallery / probe counts
====== ==============================================================

So a stored sequence is ``(T, J, H, W)``, a training batch ``(B, T, J, H, W)``, the model's streams
``(B, T, S, H, W)`` and an embedding ``(B, D, P)``.
"""

__version__ = "0.1.0"
