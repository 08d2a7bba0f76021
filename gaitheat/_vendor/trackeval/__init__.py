"""TrackEval 1.3.0's metrics (HOTA, Identity, CLEAR), copied unchanged from the PyPI wheel; MIT licence in LICENSE.

TrackEval (https://github.com/JonathonLuiten/TrackEval, packaged as ``trackeval`` by kovalp) is the
official MOTChallenge evaluator. Its wheel requires ``opencv-python`` (and matplotlib, pycocotools),
which would install a second OpenCV over ``opencv-python-headless``; the metric classes themselves
need only NumPy and SciPy, so the five files they use are copied here as released. Only this
``__init__`` and ``metrics/__init__`` are ours (the package's own pull in its dataset loaders and plots).
"""
