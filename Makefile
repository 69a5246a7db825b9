# lutmac front door. `make` = train export gen sim synth on the offline `digits` data set; `make test` = the test suite.
# Variables and artifacts are fixed by ARCHITECTURE.md (docs/architecture.md here).

DATASET  ?= digits
ifeq ($(DATASET),digits)
ARCH     ?= tfc
else
ARCH     ?= sfc
endif
# EPOCHS: empty takes the data set's recipe (60 digits, 250 mnist, 40 fashion-mnist, 500 cifar10, 200 svhn)
EPOCHS   ?=
BINARIZE ?= det
ABITS    ?= 8
SEED     ?= 0
# RESUME=1 continues a stopped `make train` from OUT/train/checkpoint.pt
RESUME   ?=
# auto (CUDA when present) | cpu | cuda[:N]; NPROC > 1 trains data-parallel (torchrun's launcher; one per GPU)
DEVICE   ?= auto
NPROC    ?= 1
# MVU input vectors: auto (distributed RAM wherever a layer allows) | registers
BUFFERS  ?= auto
# weight ROMs: auto (block RAM where deeper than 16 words) | block | tool (the synthesis tool's choice)
WEIGHT_MEMORY ?= auto
# progression requantisers: staged (stages of up to SF - 1 steps, fewest LUTs) | pipeline (one step per stage)
SEARCH   ?= staged
PE       ?= 16
SIMD     ?= 64
# adder-tree netlist: portable | xc7 | xcu | xcup (the Xilinx ones instantiate LUT6_2 + CARRY primitives)
TARGET   ?= portable
# register the adder trees every K levels (timing); layers made fully parallel with constant weights (e.g. fc3)
TREE_PIPELINE ?= 0
HARDWIRED ?=
FOLDING  ?=
# automatic folding instead of PE/SIMD: a target of cycles per image, or a LUT budget (gen's estimate)
TARGET_CYCLES ?=
FIT_LUTS ?=
# AXIS=1: the network inside AXI4-Stream ports (aclk, aresetn, s_axis_*, m_axis_*); NAME: prefix of every module
# in top.v (default lutmac: lutmac_top), so that two networks live in one design
AXIS     ?=
NAME     ?=
SIM      ?= verilator
N        ?= all
# KEEP_BUILD=1: make sim keeps Verilator's generated C++ and objects (by default only the simulation executable stays)
KEEP_BUILD ?=
BOARD    ?=
FAMILY   ?= xc7
SWEEP_PE ?= 1-16
SWEEP_SIMD ?= $(SIMD)
CLOCK_MHZ ?= 100
# make report: where the syntheses run, local (threads) | dask; SCHEDULER: a running `dask scheduler` (tcp://host:8786),
# empty with EXECUTOR=dask starts a LocalCluster on this machine
EXECUTOR ?= local
SCHEDULER ?=
BAUD     ?= 115200
# pnr: board (board top with UART, bitstream) or network (the network alone, out of context, timed at TARGET_MHZ)
PNR_SCOPE ?= board
TARGET_MHZ ?= 200
# pnr (board scope): the network's own clock in MHz, made by the ECP5 PLL; empty: the network on the board clock
NET_MHZ  ?=
PORT     ?=
# make ip: the Vivado part (default: BOARD's if set, else xc7a35ticsg324-1L)
PART     ?=
OUT      ?= build/$(notdir $(basename $(DATASET)))-$(ARCH)

VENV     := .venv
PY       := $(VENV)/bin/python
STAMP    := $(VENV)/.lutmac-setup
SETUP_LOG := $(VENV)/setup.log
APT_PKGS := iverilog dataset-fashion-mnist liblz4-dev zlib1g-dev

.DEFAULT_GOAL := all
.PHONY: all setup train export gen sim synth report pnr build ip flash infer test test-slow bench clean

all: train export gen sim synth

setup: $(STAMP)

# Idempotent: re-runs only when pyproject.toml changes. torch comes first, pinned, so pip takes the local
# CPU wheel instead of resolving a multi-GB CUDA build for the project's range.
$(STAMP): pyproject.toml Makefile
	@command -v python3 >/dev/null || { echo "setup: python3 (>= 3.11) is needed on PATH" >&2; exit 2; }
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then echo "setup: apt-get install$$missing"; \
	    (apt-get install -y -qq $$missing >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq $$missing; }) \
	    || { echo "setup: apt-get install$$missing failed" >&2; exit 2; }; fi; \
	else \
	  for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || { \
	    echo "setup: not root; for Icarus and offline Fashion-MNIST run: sudo apt-get install $(APT_PKGS)"; break; }; done; \
	fi
	@test -x $(PY) || python3 -m venv $(VENV)
	@echo "setup: pip install torch==2.13.0 and .[test] into $(VENV) (log: $(SETUP_LOG))"
	@{ $(PY) -m pip install -q --upgrade pip && $(PY) -m pip install -q torch==2.13.0 \
	  && $(PY) -m pip install -q -e '.[test]'; } >$(SETUP_LOG) 2>&1 \
	  || { tail -n 20 $(SETUP_LOG) >&2; echo "setup: pip install failed; full log: $(SETUP_LOG)" >&2; exit 2; }
	@# the project root on sys.path as well: setuptools' editable finder runs after the path search, so a folder named
	@# export/ or train/ in the working directory (an OUT folder) would shadow the stages as namespace packages
	@$(PY) -c 'import pathlib, sysconfig; pathlib.Path(sysconfig.get_path("purelib"), "lutmac-root.pth").write_text("$(CURDIR)\n")'
	@touch $@

TRAIN_ARGS = --dataset $(DATASET) --arch $(ARCH) --binarize $(BINARIZE) --abits $(ABITS) --seed $(SEED) \
  --device $(DEVICE) $(if $(EPOCHS),--epochs $(EPOCHS)) $(if $(filter 1,$(RESUME)),--resume)
TRAIN_CMD = $(PY) -m train $(if $(filter-out 1,$(NPROC)),--nproc $(NPROC))
train: setup
	$(strip $(TRAIN_CMD) $(TRAIN_ARGS)) -o $(OUT)/train

export: setup
	$(PY) -m export --checkpoint $(OUT)/train/model.pt -o $(OUT)/export

FOLD_ARGS = --pe $(PE) --simd $(SIMD) $(if $(FOLDING),--folding $(FOLDING)) --target $(TARGET) \
  --tree-pipeline $(TREE_PIPELINE) --buffers $(BUFFERS) --weight-memory $(WEIGHT_MEMORY) --search $(SEARCH) $(if $(HARDWIRED),--hardwired $(HARDWIRED)) \
  $(if $(TARGET_CYCLES),--target-cycles $(TARGET_CYCLES)) $(if $(FIT_LUTS),--fit-luts $(FIT_LUTS))
GEN_ARGS = $(FOLD_ARGS) $(if $(filter 1,$(AXIS)),--axis) $(if $(NAME),--name $(NAME))
gen: setup
	$(PY) -m hw gen --export $(OUT)/export $(strip $(GEN_ARGS)) -o $(OUT)/rtl

SIM_ARGS = --sim $(SIM) --n $(N) $(if $(filter 1,$(KEEP_BUILD)),--keep-build)
sim: setup
	$(PY) -m sim --export $(OUT)/export --rtl $(OUT)/rtl $(strip $(SIM_ARGS)) -o $(OUT)/sim

synth: setup
	$(PY) -m boards synth --rtl $(OUT)/rtl --family $(FAMILY) -o $(OUT)/synth

# PE sweep of the current export (SWEEP_PE: 1,2,4 or a power-of-two range 1-16), synthesised in parallel
# (EXECUTOR=dask SCHEDULER=tcp://host:8786: on a Dask cluster)
report: setup
	$(PY) -m boards report --export $(OUT)/export --pe $(SWEEP_PE) --simd $(SWEEP_SIMD) --family $(FAMILY) \
	  --clock-mhz $(CLOCK_MHZ) --executor $(EXECUTOR) $(if $(SCHEDULER),--scheduler $(SCHEDULER)) \
	  -o $(OUT)/report

# ECP5 boards (e.g. BOARD=ulx3s_85f): open place and route, Fmax, bitstream. Needs `make gen` (portable RTL).
# PNR_SCOPE=network places the network alone on the board's device (no pins, no bitstream): pnr/BOARD-network
pnr: setup
	$(PY) -m boards pnr --rtl $(OUT)/rtl --board "$(BOARD)" --baud $(BAUD) --scope $(PNR_SCOPE) \
	  --target-mhz $(TARGET_MHZ) $(if $(NET_MHZ),--net-mhz $(NET_MHZ)) $(if $(FORCE),--force) -o $(OUT)/pnr/$(BOARD)$(if $(filter network,$(PNR_SCOPE)),-network)

# Xilinx boards (e.g. BOARD=arty_a7_35): amaranth-boards plan everywhere, Vivado run where Vivado exists
build: setup
	$(PY) -m boards build --rtl $(OUT)/rtl --board "$(BOARD)" --baud $(BAUD) $(if $(NET_MHZ),--net-mhz $(NET_MHZ)) \
	  $(if $(FORCE),--force) -o $(OUT)/build/$(BOARD)

# Vivado IP (ip/component.xml) of an AXI4-Stream network (make gen AXIS=1): package_ip.tcl everywhere, run where
# Vivado exists
ip: setup
	$(PY) -m boards ip --rtl $(OUT)/rtl $(if $(BOARD),--board $(BOARD)) $(if $(PART),--part $(PART)) -o $(OUT)/ip

flash: setup
	$(PY) -m boards flash --board "$(BOARD)" --dir $(OUT) $(if $(DRY_RUN),--dry-run)

# host client: PORT=/dev/ttyUSB1 make infer
infer: setup
	$(PY) -m boards infer --port "$(PORT)" --export $(OUT)/export --rtl $(OUT)/rtl --baud $(BAUD) \
	  $(if $(filter-out all,$(N)),--n $(N))

# The suite CI runs: everything except tests marked slow (full data sets).
test: setup
	$(PY) -m pytest -q -m "not slow"

test-slow: setup
	$(PY) -m pytest -q -m slow

bench: setup
	$(PY) -m bench -o build/bench --build build

clean:
	rm -rf build .pytest_cache .hypothesis
