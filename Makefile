# papo: `make demo` runs the main job on built-in sample data, `make test` runs every test.
GO      ?= go
BIN     := bin
DEMO    := demo
FUZZTIME ?= 60s

.PHONY: all build cuda demo test test-go test-python test-race fuzz bench peers roofline vet fmt-check interop-deps kernels check-kernels clean closedloop closedloop-full

all: build

# bin/papo is the front end (tag papofront: analyze, reweight and stats on Arrow IPC, CSV and
# JSONL, gen, probe; it starts in ~2.5 ms instead of ~8-11), bin/papo-full the whole program,
# which the front end hands every other command and every run with Parquet over to (README).
build:
	CGO_ENABLED=0 $(GO) build -o $(BIN)/papo-full ./cmd/papo
	CGO_ENABLED=0 $(GO) build -tags papofront -o $(BIN)/papo ./cmd/papo

# papo-cuda: the same program with the CUDA engine (needs cuda.h and libcuda; see README).
cuda:
	$(GO) build -tags cuda -o $(BIN)/papo-cuda ./cmd/papo

# Six steps of synthetic GRPO rollouts over a 151,936-token vocabulary, analyzed and reweighted
# (PAPO, and STEER on the row statistics analyze writes), then the HTML report of the two
# reweightings side by side (demo/report.html, its figures as PNG in demo/figures/).
demo: build
	@mkdir -p $(DEMO)
	$(BIN)/papo gen -o $(DEMO)/rollouts.arrow --tokens 384 --steps 6 --seed 7
	$(BIN)/papo analyze $(DEMO)/rollouts.arrow -o $(DEMO)/polarity.arrow --summary $(DEMO)/summary.csv \
		--row-stats $(DEMO)/rowstats.arrow
	$(BIN)/papo reweight $(DEMO)/rollouts.arrow -o $(DEMO)/reweighted.parquet --state $(DEMO)/state.json --reset-state \
		--phase-mode target --target-entropy 0.8 --summary $(DEMO)/reweight-summary.csv
	$(BIN)/papo reweight $(DEMO)/rowstats.arrow -o $(DEMO)/steer.parquet --method steer --quiet \
		--phase-mode target --target-entropy 0.8
	$(BIN)/papo report $(DEMO)/reweighted.parquet $(DEMO)/steer.parquet -o $(DEMO)/report.html --png $(DEMO)/figures \
		--phase-mode target --target-entropy 0.8
	@echo "outputs in $(DEMO)/ (open $(DEMO)/report.html)"

# The JavaScript apache-arrow package (a second Arrow implementation) for the interop tests and
# the serve client example; the Python client is checked for syntax (pyarrow is not installed).
interop-deps:
	@if command -v npm >/dev/null; then npm ci --prefix io/testdata/jsgen --no-audit --no-fund >/dev/null && \
	npm ci --prefix examples/node --no-audit --no-fund >/dev/null; \
	else echo "npm not found: the interop and serve tests will be skipped"; fi
	@if command -v python3 >/dev/null; then PYTHONPYCACHEPREFIX=$$(mktemp -d) python3 -m py_compile examples/python/reweight.py examples/python/flight.py examples/python/row_stats.py examples/python/ddp_global_stats.py cmd/papo/testdata/torchstats.py bench/peers.py; fi

test: vet fmt-check interop-deps test-go test-python closedloop test-race fuzz

# Every package with the assembly kernels (chosen at run time; the polarity tests also force
# each kernel the processor runs), then the CPU engine's packages built with `noasm` (pure Go
# only, as on other architectures).
test-go:
	$(GO_TEST_ENV) $(GO) test -count=1 ./...
	$(GO_TEST_ENV) $(GO) test -count=1 -tags noasm ./polarity/... ./run/... ./bench

# The Go tests that run Python (torch's row statistics, the peers of papo bench --peers) take
# the project's environment (PYTHON, below) as PAPO_PYTHON where it exists and PAPO_PYTHON is
# not set: the python3 on PATH need not have NumPy or torch.
GO_TEST_ENV = $(if $(PAPO_PYTHON),,$(if $(wildcard $(PYTHON)),PAPO_PYTHON=$(abspath $(PYTHON))))

# The race detector on the packages with goroutines: the CPU engine's workers, the CUDA
# pipeline and its fallback, the run pipeline, the state's lock and journal, the CLI's signal
# handling (about 2 minutes on 2 cores).
RACE_PKGS ?= ./polarity ./cuda/pipeline ./cuda/fallback ./run ./serve ./internal/atomicfile ./papo ./cmd/papo
test-race:
	$(GO_TEST_ENV) $(GO) test -race -count=1 $(RACE_PKGS)

# The fuzz targets, each for its share of time; each fails below its minimum of executed inputs
# (.ci/fuzz.sh; measured on the 2-core machine: the CSV/JSONL/Parquet tables 740-2,300/s (the low
# end in a CI run that began by replaying a 252-input cache), the
# engine ~5,800/s, a whole serve request ~330/s, its run state's fsync included). `make fuzz FUZZTIME=10m FUZZ_EACH=5m` for a longer hunt.
FUZZ_EACH ?= 20s
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) bash .ci/fuzz.sh ./io FuzzReader 50000
	GO=$(GO) FUZZTIME=$(FUZZ_EACH) bash .ci/fuzz.sh ./io FuzzTables 5000
	GO=$(GO) FUZZTIME=$(FUZZ_EACH) bash .ci/fuzz.sh ./polarity FuzzEngineParams 30000
	GO=$(GO) FUZZTIME=$(FUZZ_EACH) bash .ci/fuzz.sh ./serve FuzzRequestMetadata 2000

# The Python package (python/): ruff, mypy and pytest in the virtual environment made from
# python/requirements.lock (.ci/run makes python/.venv; PYTHON=path/to/venv/bin/python for
# another). Without it the target says so and passes, unless PAPO_REQUIRE_PYTHON is set (CI).
PYTHON ?= python/.venv/bin/python
test-python:
	@if [ ! -x "$(PYTHON)" ]; then \
		if [ -n "$$PAPO_REQUIRE_PYTHON" ]; then echo "test-python: no $(PYTHON) (PAPO_REQUIRE_PYTHON is set)"; exit 1; fi; \
		echo "test-python: no $(PYTHON): skipped (.ci/run shows how to make it)"; exit 0; fi; \
	$(PYTHON) -m ruff check python && $(PYTHON) -m ruff check --config python/pyproject.toml examples/python && \
	(cd python && $(abspath $(PYTHON)) -m mypy src) && \
	$(PYTHON) -m pytest -q python/tests -p no:cacheprovider

# The closed-loop benchmark (bench/closedloop: a GRPO loop in torch that calls papo serve every
# step): ruff and mypy on it, then its quick mode with its assertions (per-token and same-token
# correlations positive, the head-SGD per-token slope within 10 % of 1). Same PYTHON and skip
# rule as test-python. closedloop-full runs every arm on 3 seeds and writes bench/RESULTS.md and
# the docs/closedloop-* figures.
CLOSEDLOOP_LINT = $(PYTHON) -m ruff check --config python/pyproject.toml bench/closedloop && \
	$(PYTHON) -m ruff format --check --config python/pyproject.toml bench/closedloop && \
	MYPYPATH=python/src $(PYTHON) -m mypy --strict --python-version 3.11 --ignore-missing-imports bench/closedloop/*.py
closedloop: build
	@if [ ! -x "$(PYTHON)" ]; then \
		if [ -n "$$PAPO_REQUIRE_PYTHON" ]; then echo "closedloop: no $(PYTHON) (PAPO_REQUIRE_PYTHON is set)"; exit 1; fi; \
		echo "closedloop: no $(PYTHON): skipped (.ci/run shows how to make it)"; exit 0; fi; \
	$(CLOSEDLOOP_LINT) && HF_HUB_OFFLINE=1 $(PYTHON) bench/closedloop/run.py --quick --papo $(BIN)/papo

closedloop-full: build
	$(CLOSEDLOOP_LINT) && HF_HUB_OFFLINE=1 $(PYTHON) bench/closedloop/run.py --papo $(BIN)/papo

vet:
	$(GO) vet ./...
	$(GO) vet -tags papofront ./cmd/papo

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# The C roofline of the engine's four sums (AVX2+FMA, AVX-512F; gcc -O3).
roofline:
	bash bench/roofline.sh

bench: build
	$(GO) test ./polarity -run='^$$' -bench=. -benchtime=5x
	$(BIN)/papo bench --device cpu

# The roofline, the engine, papo analyze end to end and the peers (PyTorch, NumPy) in one table;
# appends a dated row per thread count to bench/RESULTS.md (about a minute on 2 cores).
peers: build
	$(BIN)/papo bench --peers

kernels:
	$(MAKE) -C kernels ptx

check-kernels:
	$(MAKE) -C kernels check-ptx ptxas-report

clean:
	rm -rf $(BIN) $(DEMO)
