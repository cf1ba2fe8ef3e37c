# The README's two commands: `make test` and `make demo`. Each sets itself up on a fresh machine.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# The CPU build that lies on this kind of machine's disk; GPU machines install their own torch first.
TORCH  ?= torch==2.13.0
# The demo's input: the bundled expert trajectories (the public ones beside the checkout are ~1,200 steps,
# more than a CPU trains on in minutes; pass DATA=../shared/data/trajectories to use them anyway).
DATA   ?= trajectories

.PHONY: venv docker test demo lint bench clean

# setup.py compiles the reward's C kernels, so a changed .c file reinstalls too.
$(STAMP): pyproject.toml setup.py $(wildcard srl_agent/rewards/*.c)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e '.[dev,ray,swesmith]'
	touch $(STAMP)

venv: $(STAMP)

docker:
	scripts/ensure-docker
	scripts/build-base-image

test: venv docker
	scripts/ensure-chromium
	$(PY) -m pytest

# prepare → split by trajectory → SFT warm-up of the tiny model → SRL → held-out scores; the last line is JSON.
demo: venv docker
	$(VENV)/bin/srl-agent pipeline --trajectories $(DATA) --output-dir runs/demo --recipe tiny --json

lint: venv
	$(VENV)/bin/ruff check srl_agent tests scripts

bench: venv
	$(PY) scripts/bench.py prepare

clean:
	rm -rf $(VENV) runs
