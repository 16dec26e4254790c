# artgan: thin wrappers over `python -m artgan`. The first target you run creates .venv
# from requirements.txt; later runs reuse it (it is rebuilt when requirements.txt changes).
#   make search TASK=genre [TRIALS=3] [EPOCHS=1] [MINUTES=30] [SIZE=64] [MAX_IMAGES=200] [FRESH=1] [WORKERS=4]
#   make worker TASK=genre CHIEF=host:port [ID=gpu-box-1]   (join a distributed search)
#   make report TASK=genre   (a quick run's folder: make report TASK=runs/genre-quick)
#   make compare RUNS="runs/a runs/b"   make tensorboard [PORT=6006]
#   make explain MODEL=runs/genre/best/model_1.keras IMAGES="a.jpg b.jpg" [OUT=heat]
#   make similar [MODEL=runs/style/best/model_1.keras] [K=10]   (NGA similar-painting search)
#   make data WIKIART=1 [TO=DIR]   make data NGA=1 [LIMIT=N] [CLASSIFICATION=Painting] [SIZE=800] [TO=DIR]
#   make test [ARGS=...]   make test-fast   make lint   make deps (what the tests need)   make venv
#   make bench [ARGS="--only search"] (writes docs/benchmarks.md)   make clean-cache (empty .cache/images)
#   make rehearse [FRACTION=0.1] [TO=DIR] [MEASURE=1]   (stand-in WikiArt tree; docs/rehearsal.md)

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TASK   ?= style
PORT   ?= 6006
RUNS   ?= runs

export TF_CPP_MIN_LOG_LEVEL ?= 3
export PYTHONUNBUFFERED := 1

SEARCH_SETS = $(if $(TRIALS),--set budget.max_trials=$(TRIALS)) \
              $(if $(EPOCHS),--set budget.epochs=$(EPOCHS)) \
              $(if $(MINUTES),--set budget.max_minutes=$(MINUTES)) \
              $(if $(SIZE),--set space.input_size=$(SIZE)) \
              $(if $(MAX_IMAGES),--set budget.max_train_images=$(MAX_IMAGES)) \
              $(if $(FRESH),--fresh)

.PHONY: help search report compare explain tensorboard test test-fast lint deps bench venv clean-cache

help:  # the comment block at the top of this file
	@sed -n '/^#/!q; s/^# \{0,1\}//p' Makefile

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

venv: $(VENV)/.installed

search: venv
	$(PY) -m artgan search $(TASK) $(SEARCH_SETS) $(if $(WORKERS),--workers $(WORKERS)) $(ARGS)

# Join a distributed search from another machine (same data path and output folder;
# docs/distributed.md):  make worker TASK=genre CHIEF=host:port [ID=gpu-box-1] [TRIALS=...]
.PHONY: worker
worker: venv
	$(PY) -m artgan worker $(TASK) $(filter-out --fresh,$(SEARCH_SETS)) --chief $(CHIEF) \
	    $(if $(ID),--id $(ID)) $(ARGS)

# HTML report of runs/$(TASK): reports/$(TASK)/report.html (+ figures, CSV, JSON beside it).
#   make report TASK=genre [TOP=3] [LAYER=features_lstm]
report: venv
	$(PY) -m artgan report $(TASK) $(if $(TOP),--top $(TOP)) $(if $(LAYER),--layer $(LAYER)) $(ARGS)

# One page comparing searches of the same task (reports/compare-<a>-<b>/compare.html):
#   make compare RUNS="runs/genre runs/genre-random" [OUT=folder] [ARGS=--allow-mismatch]
compare: venv
	$(PY) -m artgan compare $(RUNS) $(if $(OUT),--out $(OUT)) $(ARGS)

# Grad-CAM heat maps of a saved model for image files: OUT/<name>.gradcam.png
explain: venv
	$(PY) -m artgan explain $(MODEL) $(IMAGES) --out $(or $(OUT),heat) $(ARGS)

tensorboard: venv
	$(VENV)/bin/tensorboard --logdir $(RUNS) --host 127.0.0.1 --port $(PORT)

# What the tests need besides Python packages: headless Chromium renders the HTML report in
# tests/test_report.py (Debian's package; sudo only when not root).
deps:
	@command -v chromium >/dev/null || { \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

test: venv deps lint
	$(PY) -m pytest $(ARGS)

# The fast tier (under a minute): no searches, no subprocess training, no browser.
test-fast: venv lint
	$(PY) -m pytest -m "not slow and not distributed and not browser" $(ARGS)

# Lint, formatting and types (settings in pyproject.toml); `ruff format` and
# `ruff check --fix` make most of what this reports right.
lint: venv
	$(VENV)/bin/ruff check artgan tests bench
	$(VENV)/bin/ruff format --check artgan tests bench
	$(VENV)/bin/mypy

bench: venv
	$(PY) bench/bench.py $(ARGS)

# Similar-painting search on the NGA data: index with the training-free extractors (colour and
# texture statistics; the ImageNet backbones of SIMILAR_BACKBONES) and with MODEL=path.keras
# (default: every $(RUNS)/*/best/model_1.keras), then evaluate side by side.
K ?= 10
SIMILAR_BACKBONES ?= efficientnet_lite0 efficientnet_lite1 efficientnet_lite0_multiscale
SIMILAR_MODELS = $(or $(MODEL),$(wildcard $(RUNS)/*/best/model_1.keras))
SIMILAR_EXTRACTORS = handcrafted $(SIMILAR_BACKBONES) $(addprefix model:,$(SIMILAR_MODELS))

.PHONY: similar
similar: venv
	for extractor in $(SIMILAR_EXTRACTORS); do $(PY) -m artgan similar index --extractor $$extractor || exit 1; done
	$(PY) -m artgan similar evaluate --k $(K) $(addprefix --extractor ,$(SIMILAR_EXTRACTORS)) $(ARGS)

# Download the full data (docs/data.md "Getting the full data"); reruns resume and skip what is done.
# WIKIART=1: the ArtGAN WikiArt zip, unpacked for the label files; NGA=1: NGA tables + images.
.PHONY: data
data: venv
	@[ -n "$(WIKIART)$(NGA)" ] || { echo "usage: make data WIKIART=1 [TO=DIR] | make data NGA=1 [LIMIT=N] [CLASSIFICATION=Painting] [SIZE=800] [TO=DIR]"; exit 2; }
	$(if $(WIKIART),$(PY) -m artgan data wikiart $(if $(TO),--to $(TO)) $(ARGS))
	$(if $(NGA),$(PY) -m artgan data nga $(if $(TO),--to $(TO)) $(if $(LIMIT),--limit $(LIMIT)) \
	    $(if $(CLASSIFICATION),--classification '$(CLASSIFICATION)') $(if $(SIZE),--size $(SIZE)) $(ARGS))

# A stand-in WikiArt tree (real label files; real paintings hard-linked at every labelled path)
# to rehearse full-size runs without the 25 GB download; MEASURE=1 also runs every step on it
# and prints the cost table of docs/rehearsal.md:
#   make rehearse [FRACTION=0.1] [TO=DIR]   make rehearse MEASURE=1 [FRACTION=0.1] [TO=DIR] [ARGS="--tasks artist"]
.PHONY: rehearse
rehearse: venv
	$(if $(MEASURE),$(PY) bench/rehearsal.py,$(PY) -m artgan rehearse) \
	    $(if $(FRACTION),--fraction $(FRACTION)) $(if $(TO),$(if $(MEASURE),--work,--to) $(TO)) $(ARGS)

clean-cache:
	rm -rf .cache/images
