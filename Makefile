# avbridge: `make demo` runs the main job on the real GRID sample, `make test` runs the tests.
# Both create the virtual environment first (Python 3.11 or 3.12; torch pinned to the local CPU wheel).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
GRID   ?= ../shared/data/grid
JOBS   ?= 2
TEST_JOBS ?= auto

.PHONY: venv demo demo-speech test test-fast lint bench bench-prep bench-train bench-loader gpu-wheels gpu-check clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch exactly: any range pulls the CUDA build (GBs). jax pinned: mediapipe needs it, and a pin cuts pip's
	# resolution time by ~50 s (docs/development.md).
	$(PY) -m pip install -q torch==2.13.0 jax==0.7.1 jaxlib==0.7.1
	$(PY) -m pip install -q -e ".[prep,train,metrics,vocoder,cluster,dev]"
	touch $@

venv: $(VENV)/.installed

# the word demo: s1 word shards, a 6-epoch schedule of the bridging lip-reading recipe, its test-split top-1.
# 6 min 48 s from empty folders on 2 cores of the AMD EPYC of 2026-12-05 (top-1 0.803; 2 epochs: 3 min 33 s, 0.590);
# a machine half as fast keeps the 8 minutes with WORD_SETS="--set trainer.epochs=2" (README).
WORD_SHARDS ?= out/grid-s1-words
WORD_RUN    ?= runs/demo
WORD_SETS   ?= --set trainer.epochs=6
demo: venv
	@test -d "$(GRID)/s1" || { echo "GRID not found at $(GRID)/s1. Get the corpus (doi:10.5281/zenodo.3625687):"; \
	  echo "  $(VENV)/bin/avprep download grid --speakers s1 --out /data/grid   (or unpack it by hand so that"; \
	  echo "  speaker folders s1, s2, ... sit in one folder), then: make demo GRID=/data/grid"; exit 2; }
	$(VENV)/bin/avprep grid --root $(GRID) --speakers s1 --unit word --out $(WORD_SHARDS) --jobs $(JOBS)
	$(VENV)/bin/avprep inspect $(WORD_SHARDS) --preview $(WORD_SHARDS)/preview.png
	$(VENV)/bin/avtrain run recipes/grid-words-bridging.yaml $(WORD_SETS) --set data.shards=$(WORD_SHARDS) \
	  --set output_dir=$(WORD_RUN)
	$(VENV)/bin/avtrain eval recipes/grid-words-bridging.yaml $(WORD_SETS) --set data.shards=$(WORD_SHARDS) \
	  --set output_dir=$(WORD_RUN)

# speech from silent video: s1 sentence shards (resumable), a 12-epoch schedule of the resnet CPU recipe without its
# lip-reading start (that needs the word shards and a word run first: recipes/grid-s1-speech-resnet-cpu.yaml in
# full), its test-split STOI/ESTOI/WER beside the ceilings, and speech reconstructed from a held-out s1 test clip
# (bbaf2n, in the test split). docs/results.md, issue 24: what this schedule and the full recipe reach.
# Training runs as SPEECH_PROCS data-parallel processes of one thread each (torchrun, gloo), each with 16/SPEECH_PROCS
# clips a batch (the recipe's 16 in all): 95 s an epoch against 130 s for one process of two threads on the same 2
# cores (docs/results.md, issue 24, "The demo schedule"; 38-44 s an epoch on a faster machine of the same size).
# OMP_NUM_THREADS=1 is what torchrun would set anyway; set here, torchrun does not print its warning about it.
SPEECH_RECIPE ?= recipes/grid-s1-speech-resnet-cpu.yaml
SPEECH_SETS   ?= --set trainer.epochs=12 --set model_conf.visual_init=null
SPEECH_SHARDS ?= out/grid-s1-sentence
SPEECH_RUN    ?= runs/demo-speech
SPEECH_PROCS  ?= 2
SPEECH_BATCH  := $(shell expr 16 / $(SPEECH_PROCS))
SPEECH_VIDEO  ?= $(GRID)/s1/video/bbaf2n.mkv
demo-speech: venv
	@test -d "$(GRID)/s1" || { echo "GRID not found at $(GRID)/s1 (see make demo)"; exit 2; }
	$(VENV)/bin/avprep grid --root $(GRID) --speakers s1 --preset bridging-grid --out $(SPEECH_SHARDS) --jobs $(JOBS)
	OMP_NUM_THREADS=1 $(VENV)/bin/torchrun --standalone --nproc_per_node $(SPEECH_PROCS) -m avtrain.cli run \
	  $(SPEECH_RECIPE) $(SPEECH_SETS) --set data.shards=$(SPEECH_SHARDS) --set output_dir=$(SPEECH_RUN) \
	  --set trainer.threads=1 --set data.batch_size=$(SPEECH_BATCH) --set trainer.progress=false
	$(VENV)/bin/avtrain eval $(SPEECH_RECIPE) $(SPEECH_SETS) --set data.shards=$(SPEECH_SHARDS) \
	  --set output_dir=$(SPEECH_RUN)
	$(VENV)/bin/avtrain synth --checkpoint $(SPEECH_RUN)/checkpoints/best.pt --video $(SPEECH_VIDEO) \
	  --out $(SPEECH_RUN)/synth-bbaf2n.wav

# One worker per core, a test file per worker at a time (--dist loadfile: a file's module fixtures, such as GRID
# shards made through the real detector, are built once). TEST_JOBS=0 runs everything in this process.
test: venv
	$(PY) -m pytest -q -n $(TEST_JOBS) --dist loadfile

test-fast: venv
	$(PY) -m pytest -q -n $(TEST_JOBS) --dist loadfile -m "not slow"

# ruff: lint and import order (pyproject.toml [tool.ruff]); .ci/run runs it before the tests. `ruff check --fix`
# mends what it can (import order, pyupgrade). No formatter runs: the code is laid out by hand, at 120 columns.
lint: venv
	$(VENV)/bin/ruff check .

bench-prep: venv
	OMP_NUM_THREADS=1 $(PY) scripts/bench_prep.py --grid $(GRID) --clips 100
	OMP_NUM_THREADS=1 $(PY) scripts/bench_crop_encode.py --grid $(GRID) --clips 10
	OMP_NUM_THREADS=1 $(PY) scripts/bench_mesh_threads.py --grid $(GRID) --clips 30

bench-train: venv
	@mkdir -p out
	OMP_NUM_THREADS=1 $(PY) scripts/bench_train.py --batch 8 --threads 1 --steps 3 --warmup 1 --json out/bench-train.json
	OMP_NUM_THREADS=2 $(PY) scripts/bench_train.py --batch 8 --threads 2 --steps 3 --warmup 1 --json out/bench-train-2threads.json

bench-loader: venv  # synthetic LRW-shaped clips; real GRID mouth crops too when sentence shards are in out/
	OMP_NUM_THREADS=1 $(PY) scripts/bench_loader.py --batches 20 --json out/bench-loader.json
	if [ -f out/grid-s1-sentence/index.json ]; then OMP_NUM_THREADS=1 $(PY) scripts/bench_loader.py --batches 20 \
	  --content out/grid-s1-sentence --json out/bench-loader-real.json; fi
	# no OMP_NUM_THREADS here: BLAS threads spinning beside training are what this one measures
	$(PY) scripts/bench_resize.py --json out/bench-resize.json

bench: bench-prep bench-train bench-loader

# Wheels that scripts/gpu_check.sh installs on a GPU machine without network (the image has torch and numpy only):
# CPython 3.12 by default, the lent H200 image's Python (2026-12-04): 52 MB with WITH_AV=1 (PyAV, ~35 MB, for the mp4
# loader figure), under the device tool's 64 MiB carry limit; GPU_PYTHONS="3.11 3.12 3.13" fetches all three
# (72 MB with PyAV: too much to carry). Carry the wheels/ folder with the repo.
GPU_PYTHONS ?= 3.12
gpu-wheels: venv
	@mkdir -p wheels
	for v in $(GPU_PYTHONS); do \
	  $(PY) -m pip download -q --dest wheels --no-deps --only-binary=:all: --python-version $$v \
	    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
	    --platform manylinux2014_x86_64 -r scripts/gpu_requirements.txt $(if $(WITH_AV),av==18.1.0) || exit 1; \
	done
	@du -sh wheels

gpu-check:  # on the GPU machine
	scripts/gpu_check.sh

clean:
	rm -rf out runs .pytest_cache
