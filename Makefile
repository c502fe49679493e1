# `make demo` and `make test` work on a fresh machine: each sets up .venv and the data first.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
FMNIST := /usr/share/datasets/fashion-mnist

.PHONY: setup data browser demo test clean

setup: $(STAMP)

# Debian and Ubuntu ship venv apart from python3 (package python3-venv): installed here when running as root.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv; \
		else echo "$(PYTHON) cannot make a virtual environment: run 'sudo apt-get install python3-venv', then make again"; \
			exit 2; fi; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,onnx,openvino,tensorboard]'
	touch $@

# Fashion-MNIST from Debian's dataset-fashion-mnist when running as root; otherwise say how to get it.
data:
	@if [ -f $(FMNIST)/train-images-idx3-ubyte.gz ] || [ -n "$$RESNET_DATA" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist; \
	else echo "Fashion-MNIST not found: run 'sudo apt-get install dataset-fashion-mnist' or set RESNET_DATA"; fi

# Chromium and its driver from Debian when running as root: the suite opens a run's report page in it.
browser:
	@if command -v chromedriver >/dev/null && { command -v chromium >/dev/null || command -v chromium-browser >/dev/null; }; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; \
	else echo "Chromium not found: run 'sudo apt-get install chromium chromium-driver' for the report page's test"; fi

# The main job: train and evaluate the default recipe (ResNet-14 on Fashion-MNIST) in a 10-minute budget on any
# machine, start-up and the final test (top-1, per-class accuracy, confusion.png) included; ends with report.html.
demo: setup data
	@out=runs/demo-$$(date +%Y%m%d-%H%M%S); $(VENV)/bin/resnet train --out $$out && \
		printf '\nthe run, on one page (open it in a browser): %s\n' "$$out/report.html"

test: setup data browser
	$(PY) -m pytest -q -n auto --durations=15

clean:
	rm -rf $(VENV) .pytest_cache
