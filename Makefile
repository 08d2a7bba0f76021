# Two commands do all set-up on a fresh machine:  make demo  |  make test
# Everything installs into .venv inside the checkout; stamps make a second run a no-op.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
# Real test video and images (vtest.avi, messi5.jpg, basketball1.png) from Debian's opencv-doc.
DATA_DIR := .cache/opencv-doc/usr/share/doc/opencv-doc/examples/data
export GAITHEAT_TEST_DATA := $(CURDIR)/$(DATA_DIR)
PYTEST_ARGS ?=

.PHONY: demo test install lint typecheck pytest clean pretrained

demo: $(VENV)/.stamp-base
	$(VENV)/bin/gaitheat demo

# The shipped model's recipe (issue 16): render + extract the `pretrain` synthetic plan, train
# configs/pretrained-synth.yaml, evaluate on the held-out identities, export the package weights.
# Resumable; hours of CPU for the data, <= 60 min of training on 2 cores. PRETRAIN_ARGS e.g.
# "--set model.widths=[32,64,128,256]" on a GPU.
PRETRAIN_OUT ?= pretrain_out
PRETRAIN_ARGS ?=
pretrained: $(VENV)/.stamp-base
	$(PY) -m gaitheat.pretrain_recipe --out $(PRETRAIN_OUT) $(PRETRAIN_ARGS)

test: $(VENV)/.stamp-test $(DATA_DIR)/vtest.avi lint typecheck pytest

lint: $(VENV)/.stamp-test
	$(VENV)/bin/ruff check gaitheat tests benchmarks

typecheck: $(VENV)/.stamp-test
	$(VENV)/bin/mypy gaitheat

pytest: $(VENV)/.stamp-test $(DATA_DIR)/vtest.avi
	$(VENV)/bin/pytest $(PYTEST_ARGS)

install: $(VENV)/.stamp-base

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first, pinned: the CPU wheel lies on disk, while a bare `torch` requirement would pull a
# multi-GB CUDA build. mediapipe is installed without dependencies, only for the two BlazePose
# .tflite files inside its wheel (gaitheat.assets finds them; mediapipe is never imported).
$(VENV)/.stamp-base: pyproject.toml | $(PY)
	$(PIP) install torch==2.13.0
	$(PIP) install -e .
	$(PIP) install --no-deps mediapipe==0.10.21
	$(PY) -c "import cv2; assert hasattr(cv2, 'HOGDescriptor'), 'OpenCV ' + cv2.__version__ + ' has no HOG: something pulled opencv-python>=5'"
	touch $@

$(VENV)/.stamp-test: $(VENV)/.stamp-base pyproject.toml
	$(PIP) install -e '.[test]'
	touch $@

$(DATA_DIR)/vtest.avi:
	mkdir -p .cache
	cd .cache && { apt-get download opencv-doc 2>/dev/null || { apt-get update -qq && apt-get download opencv-doc; }; }
	cd .cache && dpkg-deb -x opencv-doc_*_all.deb opencv-doc && rm -f opencv-doc_*_all.deb
	test -f $@

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache
