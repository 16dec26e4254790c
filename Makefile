# artgan: thin wrappers over `python -m artgan`. The first target you run creates .venv
# from requirements.txt; later runs reuse it (it is rebuilt when requirements.txt changes).
#   make search TASK=genre [TRIALS=3] [EPOCHS=1] [SIZE=64] [MAX_IMAGES=200] [FRESH=1]
#   make report TASK=genre   make tensorboard [PORT=6006]   make test   make bench

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TASK   ?= style
PORT   ?= 6006
RUNS   ?= runs

export TF_CPP_MIN_LOG_LEVEL ?= 3
export CUDA_VISIBLE_DEVICES ?=
export PYTHONUNBUFFERED := 1

SEARCH_SETS = $(if $(TRIALS),--set budget.max_trials=$(TRIALS)) \
              $(if $(EPOCHS),--set budget.epochs=$(EPOCHS)) \
              $(if $(SIZE),--set space.input_size=$(SIZE)) \
              $(if $(MAX_IMAGES),--set budget.max_train_images=$(MAX_IMAGES)) \
              $(if $(FRESH),--fresh)

.PHONY: help search report tensorboard test bench venv clean-cache

help:
	@sed -n '1,6p' Makefile | sed 's/^# \{0,1\}//'

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

venv: $(VENV)/.installed

search: venv
	$(PY) -m artgan search $(TASK) $(SEARCH_SETS) $(ARGS)

tensorboard: venv
	$(VENV)/bin/tensorboard --logdir $(RUNS) --host 127.0.0.1 --port $(PORT)

test: venv
	$(PY) -m pytest $(ARGS)

bench: venv
	$(PY) bench/bench.py $(ARGS)

clean-cache:
	rm -rf .cache/images
