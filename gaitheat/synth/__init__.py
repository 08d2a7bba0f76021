"""Synthetic walkers: people who differ by body and gait, rendered as real video in a CASIA-B tree.

No gait dataset can be downloaded here, so the demo and the end-to-end tests make their own. A
person (:class:`Identity`) is a parametric 3-D COCO-17 skeleton and gait cycle; every recording adds
nuisance that is *not* identity (clothes, light, camera, start, small speed changes). Figures are
drawn as Lambert-shaded capsules with a z-buffer, which a real pose model (BlazePose) reads reliably,
then blurred, noised and JPEG-compressed like real footage.

Typical use::

    from gaitheat.synth import render_sequence, sample_identity, write_dataset
    person = sample_identity(np.random.default_rng(0), difficulty=0.5)
    frames, joints, boxes = render_sequence(person, "nm-01", "090", frames=30, seed=1)
    write_dataset("synth", subjects=4, conditions=["nm-01", "bg-01"], views=["090"], frames=30)
"""

from gaitheat.synth.dataset import (
    DEFAULT_SIZE,
    FPS,
    Rendered,
    load_body_masks,
    load_ground_truth,
    mask_path,
    render_sequence,
    render_sequence_with_masks,
    sequence_paths,
    subject_identity,
    write_dataset,
    write_video,
)
from gaitheat.synth.scene import CONDITIONS, VIEWS
from gaitheat.synth.walker import Identity, sample_identity

__all__ = [
    "CONDITIONS",
    "DEFAULT_SIZE",
    "FPS",
    "VIEWS",
    "Identity",
    "Rendered",
    "load_body_masks",
    "load_ground_truth",
    "mask_path",
    "render_sequence",
    "render_sequence_with_masks",
    "sample_identity",
    "sequence_paths",
    "subject_identity",
    "write_dataset",
    "write_video",
]
