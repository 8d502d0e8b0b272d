# eoq-core: `make setup` then `make test`.  See README.md.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# the float references multiply small matrices: BLAS threads only contend (8x slower on 2 busy cores)
export OPENBLAS_NUM_THREADS ?= 1

TARGET ?= sim
ARCH ?= mlp
EPOCHS ?= 20
BATCH ?= 16
SEED ?= 0
BOARD ?= ulx3s
# a board runs the bitstream of its own configuration, named as the board (fpga/build.py BOARD_CONFIGS)
CONFIG ?= $(if $(filter serial:%,$(TARGET)),$(BOARD),default)
METRICS ?= build/metrics-$(subst /,_,$(subst :,_,$(TARGET)))-$(ARCH)-b$(BATCH)-s$(SEED).json
LINK_FAULTS ?= 0
LOSS ?=
HOST_LOOP ?=
CHECKPOINT ?=
RESUME ?=
DATA ?=
SAVE ?=
LOAD ?=
WEIGHTS ?= build/weights.npz
OUT ?=
BENCH_OUT ?= build/bench.json
DEVICE ?= 85F
SIM ?= verilator
JOBS ?= 2
STEPS ?= 5
TIMING ?=
# make bitstream gives up on a tool step after this many minutes (a diverging router runs on otherwise)
BITSTREAM_TIMEOUT ?= 90
# CONFIG given on the command line (or in the environment), not this file's default
CONFIG_GIVEN := $(filter command line environment,$(origin CONFIG))
# make sim-netlist runs the small core unless CONFIG is given
NETLIST_CONFIG := $(if $(CONFIG_GIVEN),$(CONFIG),small4x4)
# make bitstream builds the board's own configuration (fpga/build.py BOARD_CONFIGS) unless CONFIG is given
BITSTREAM_CONFIG := $(if $(CONFIG_GIVEN),--config $(CONFIG))

.PHONY: setup test test-slow sim train predict bench rtl lint bitstream sweep blocks program sim-netlist formal clean help

help:
	@echo "make setup      install simulators (apt) and the Python environment (.venv)"
	@echo "make test       quick suite (what CI runs)"
	@echo "make test-slow  long tests (accuracy over seeds, long simulations)"
	@echo "make sim        full cocotb + Verilator regression with a pass/fail table"
	@echo "make train      train the digits network (TARGET=sim|golden|fp32|serial:PORT)"
	@echo "                ARCH=mlp|cnn DATA=FILE.npz SAVE=FILE LOAD=FILE LINK_FAULTS=RATE CHECKPOINT=DIR RESUME=DIR"
	@echo "                the MLP on sim and serial: trains autonomously (data on the core, a LOOP per epoch);"
	@echo "                HOST_LOOP=1: the host drives every step; LOSS=float|int (float: the host's softmax, host loop)"
	@echo "make predict    classify the test split with WEIGHTS=FILE (saved by make train SAVE=FILE) [OUT=FILE.csv]"
	@echo "make bench      benchmarks -> BENCH_OUT=$(BENCH_OUT)"
	@echo "make rtl        Verilog for CONFIG=$(CONFIG) into build/rtl/"
	@echo "make bitstream BOARD=ulx3s DEVICE=85F [CONFIG=ulx3s FREQ=MHz BAUD=N PNR_SEED=N TIMEOUT=90]  (docs/fpga.md)"
	@echo "make sweep BOARD=ulx3s [CONFIG='a b' FREQS='30 40' SEEDS='1 2' JOBS=2]  build table -> build/fpga/sweep/sweep.md"
	@echo "make blocks BOARD=ulx3s [CONFIG=ulx3s TIMING=MHz PNR_SEED=N]  LUT4/FF/DSP/block RAM per block of the core -> build/fpga/blocks/"
	@echo "                TIMING=100: also each block's Fmax and critical path, placed and routed out of context"
	@echo "make sim-netlist BOARD=ulx3s [CONFIG=small4x4 STEPS=5 LOSS=float|int]  train on the synthesized netlist (docs/fpga.md)"
	@echo "make formal     formal proofs of the rounding units and the host link's CRC check (docs/formal.md)"

setup: $(VENV)/.setup-stamp

$(VENV)/.setup-stamp: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh $(VENV)
	touch $@

test: setup
	$(PY) -m pytest -q -n $(JOBS) -m "not slow"

test-slow: setup
	$(PY) -m pytest -q -n $(JOBS) -m slow

sim: setup
	$(PY) -m sim_tests.regress --sim $(SIM)

# RESUME=DIR continues the run checkpointed in DIR with its own settings.
train: setup
	$(PY) -m host.train $(if $(RESUME),--resume $(RESUME),--target $(TARGET) --epochs $(EPOCHS) --batch $(BATCH) $(if $(LOAD),--load $(LOAD),--arch $(ARCH) --seed $(SEED) --config $(CONFIG) $(if $(DATA),--data $(DATA))) $(if $(LOSS),--loss $(LOSS)) $(if $(HOST_LOOP),--host-loop)) --metrics $(METRICS) $(if $(filter-out 0,$(LINK_FAULTS)),--link-faults $(LINK_FAULTS)) $(if $(CHECKPOINT),--checkpoint $(CHECKPOINT)) $(if $(SAVE),--save $(SAVE))

# WEIGHTS=FILE (from make train SAVE=FILE) classifies the test split on TARGET (sim by default)
predict: setup
	$(PY) -m host.predict --weights $(WEIGHTS) $(if $(filter command line,$(origin TARGET)),--target $(TARGET)) $(if $(DATA),--data $(DATA)) $(if $(OUT),--out $(OUT))

bench: setup
	$(PY) -m bench --out $(BENCH_OUT)

rtl: setup
	$(PY) -m rtl_gen --config $(CONFIG) -o build/rtl/

lint: setup
	$(PY) -m rtl_gen --config $(CONFIG) -o build/rtl/ --unit eoq_system
	verilator --lint-only -Wall sim_tests/verilator_waivers.vlt build/rtl/eoq_system.v

bitstream: setup
	$(PY) -m fpga.build --board $(BOARD) --device $(DEVICE) $(BITSTREAM_CONFIG) $(if $(FREQ),--freq $(FREQ)) $(if $(BAUD),--baud $(BAUD)) $(if $(PNR_SEED),--seed $(PNR_SEED)) --timeout $(or $(TIMEOUT),$(BITSTREAM_TIMEOUT))

blocks: setup
	$(PY) -m fpga.blocks --board $(BOARD) --device $(DEVICE) $(BITSTREAM_CONFIG) $(if $(TIMING),--timing $(TIMING)) $(if $(PNR_SEED),--seed $(PNR_SEED))

sweep: setup
	$(PY) -m fpga.sweep --board $(BOARD) --device $(DEVICE) $(if $(CONFIG_GIVEN),--configs $(CONFIG)) --freqs $(or $(FREQS),30) $(if $(SEEDS),--seeds $(SEEDS)) $(if $(JOBS),--jobs $(JOBS)) $(if $(TIMEOUT),--timeout $(TIMEOUT))

program: setup
	$(PY) -m fpga.program --board $(BOARD)

sim-netlist: setup
	$(PY) -m sim_netlist --board $(BOARD) --device $(DEVICE) --config $(NETLIST_CONFIG) --steps $(STEPS) --loss $(or $(LOSS),float)

formal: setup
	$(PY) -m formal

clean:
	rm -rf build sim_build .pytest_cache
