# edge_denoise_ros: `make demo` runs the main job, `make test` the whole suite.
# Everything goes into .venv (pinned by requirements.txt); nothing is installed by hand.

SHELL  := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
FMNIST ?= $(or $(FASHION_MNIST_DIR),/usr/share/datasets/fashion-mnist)
PYTEST_ARGS ?=

.PHONY: setup data demo test bench results train bundle next-bundle scenes-results next-results clean help

help:
	@echo "make demo   - set up, then run the main job: the realistic profile weights/scenes_next, edge + host on real DDS"
	@echo "make test   - set up, then run the whole test suite"
	@echo "make bench  - set up, then run the benchmarks (JSON + plots under out/bench)"
	@echo "make results - rewrite the README's result blocks from docs/results/*.json"
	@echo "make train  - set up, then retrain every shipped weights file (seeded)"
	@echo "make bundle - set up, then remake the first realistic profile weights/scenes (seeded, ~2 h, resumable)"
	@echo "make next-bundle - set up, then remake weights/scenes_next, the realistic profile make demo serves (seeded, ~3 h, resumable)"
	@echo "make next-results - measure again the figures of weights/scenes_next (after its weights change; ~30 min)"
	@echo "make scenes-results - measure again every figure of weights/scenes (after its weights change; ~2 h)"
	@echo "make setup  - create/refresh .venv and the Fashion-MNIST data"

setup: $(STAMP) data

# Rebuilt when the pinned requirements or the package metadata change.
$(STAMP): requirements.txt setup.py setup.cfg package.xml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

data:
	@if [ -f "$(FMNIST)/t10k-images-idx3-ubyte.gz" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian's dataset-fashion-mnist"; \
	  apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null; }; \
	else \
	  echo "Fashion-MNIST is missing. Run: sudo apt-get install dataset-fashion-mnist"; \
	  echo "(or set FASHION_MNIST_DIR to a folder with the four idx .gz files)"; exit 1; \
	fi

demo: setup
	$(BIN)/edge-denoise demo --bundle weights/scenes_next

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Every benchmark, each writing its JSON (and plots) under out/bench. Long: see README.
bench: setup
	mkdir -p out/bench
	$(BIN)/edge-denoise bench denoiser --json | tail -n 1 > out/bench/denoiser.json
	$(BIN)/edge-denoise bench layout --bundle weights/scenes_next --json | tail -n 1 > out/bench/layout.json
	$(BIN)/edge-denoise bench codecs --json | tail -n 1 > out/bench/codecs.json
	$(BIN)/edge-denoise bench scheduler --json | tail -n 1 > out/bench/scheduler.json
	$(BIN)/edge-denoise bench planner --json | tail -n 1 > out/bench/planner.json
	$(BIN)/edge-denoise bench camera --json | tail -n 1 > out/bench/camera.json
	@if [ "$$(id -u)" = 0 ]; then \
	  $(BIN)/edge-denoise bench link --out out/bench/link --json | tail -n 1 > out/bench/link.json; \
	else echo "bench link skipped: it needs root (network namespaces, tc)"; fi

# The README's result blocks, rendered from the committed docs/results/*.json (stdlib only:
# no set-up needed). test/test_readme_results.py fails when they differ.
results:
	$(PYTHON) -m edge_denoise_ros.harness.results --write

# Retrain every shipped weights file, in dependency order (seeded; ~1 h on 2 cores).
train: setup
	$(BIN)/edge-denoise train target
	$(BIN)/edge-denoise train denoiser
	$(BIN)/edge-denoise train denoiser-d
	$(BIN)/edge-denoise train host-finetune

# The realistic profile, made the way a user makes a bundle (seeded; ~2 h on 2 cores; run
# again after a stop: every training step resumes from weights/scenes/checkpoints).
SCENES := weights/scenes
# The flags every realistic-profile target training shares (bundle, next-bundle).
TARGET_FLAGS := --model mobilenet_v3_small --input 3x96x96 --batch-size 128 --optimizer adamw \
  --weight-decay 0.0001 --label-smoothing 0.1 --threads 2
bundle: setup
	$(BIN)/edge-denoise data scenes --out out/scenes --train 60000 --test 10000 --size 96
	$(BIN)/edge-denoise train target $(TARGET_FLAGS) --data out/scenes/train --limit 40000 \
	  --epochs 8 --lr 0.004 --seed 0 --out $(SCENES)
	$(BIN)/edge-denoise train target $(TARGET_FLAGS) --weights $(SCENES)/target.pt \
	  --data out/scenes/train --epochs 4 --lr 0.002 --seed 1 --out $(SCENES)
	$(BIN)/edge-denoise train denoiser --out $(SCENES) --data out/scenes/train --n-train 24000 \
	  --width 0.125 --epochs 4 --batch-size 64 --lr 0.001 --threads 2 --seed 0 --eval-limit 500
	$(BIN)/edge-denoise train denoiser-d --out $(SCENES) --n-train 24000 --epochs 2 \
	  --batch-size 64 --lr 0.0002 --threads 2 --seed 0 --eval-limit 500
	$(BIN)/edge-denoise train host-finetune --out $(SCENES) --cut net.features.4 --codec jpeg \
	  --quality 50 --epochs 2 --limit 12000 --test-limit 2000 --threads 2 --lr 0.01
	$(BIN)/edge-denoise bundle accuracy --bundle $(SCENES) --codecs q8,jpeg,deepn_jpeg \
	  --qualities 5,20,50,90 --limit 2000 --threads 2
	$(BIN)/edge-denoise bundle accuracy --bundle $(SCENES) --cuts frame --codecs jpeg,deepn_jpeg \
	  --qualities 5,20,50,90 --limit 2000 --threads 2

# The realistic profile make demo serves (the first, weights/scenes, made with make bundle, stays):
# the target learns the items alone first, then 120,000 scenes (the first 60,000 are out/scenes'
# own; more scenes of the same items, in other places and over other photographs); its DUNET
# learns attacks no larger than the evaluated 8/255, then trains further three times (--continue:
# at half the rate, then with 40 % clean scenes, then at 0.0003); DUNET_D, from the card, 4
# epochs on the last one's set; a host tail for JPEG q50 at net.features.4 that tunes only
# net.features.5-9 (a 1 MB file); the accuracy profile. Seeded; ~3 h on 2 cores; resumable.
SCENES_NEXT := weights/scenes_next
# The cuts its accuracy profile measures: mobilenet_v3_small's block outputs and its head (the
# cuts inside a block are left unmeasured, so cut auto never sends their lossy features).
NEXT_CUTS := net.features.0,net.features.1,net.features.2,net.features.3,net.features.4,$\
net.features.5,net.features.6,net.features.7,net.features.8,net.features.9,net.features.10,$\
net.features.11,net.features,net.avgpool,flatten,net.classifier.0,net.classifier.1
next-bundle: setup
	$(BIN)/edge-denoise data items --out out/items
	$(BIN)/edge-denoise data scenes --out out/scenes120 --train 120000 --test 10000 --size 96
	$(BIN)/edge-denoise train target $(TARGET_FLAGS) --data out/items/train --epochs 2 \
	  --lr 0.004 --channels-last --seed 0 --out $(SCENES_NEXT)
	$(BIN)/edge-denoise train target $(TARGET_FLAGS) --weights $(SCENES_NEXT)/target.pt \
	  --data out/scenes120/train --epochs 10 --lr 0.004 --channels-last --seed 0 \
	  --out $(SCENES_NEXT)
	$(BIN)/edge-denoise train target $(TARGET_FLAGS) --weights $(SCENES_NEXT)/target.pt \
	  --data out/scenes120/train --epochs 6 --lr 0.0015 --channels-last --seed 1 \
	  --out $(SCENES_NEXT)
	$(BIN)/edge-denoise train denoiser --out $(SCENES_NEXT) --data out/scenes120/train \
	  --n-train 24000 --width 0.125 --epochs 4 --batch-size 64 --lr 0.001 --threads 2 --seed 0 \
	  --eval-limit 500 --train-eps 2/255,4/255,6/255,8/255
	$(BIN)/edge-denoise train denoiser --out $(SCENES_NEXT) --continue --data out/scenes120/train \
	  --n-train 24000 --width 0.125 --epochs 4 --batch-size 64 --lr 0.0005 --threads 2 --seed 0 \
	  --eval-limit 500 --train-eps 2/255,4/255,6/255,8/255
	$(BIN)/edge-denoise train denoiser --out $(SCENES_NEXT) --continue --data out/scenes120/train \
	  --n-train 24000 --width 0.125 --epochs 4 --batch-size 64 --lr 0.0005 --threads 2 --seed 0 \
	  --eval-limit 500 --attack-mix 0.4,0.24,0.36 --train-eps 2/255,4/255,6/255,8/255
	$(BIN)/edge-denoise train denoiser --out $(SCENES_NEXT) --continue --data out/scenes120/train \
	  --n-train 24000 --width 0.125 --epochs 4 --batch-size 64 --lr 0.0003 --threads 2 --seed 0 \
	  --eval-limit 500 --attack-mix 0.4,0.24,0.36 --train-eps 2/255,4/255,6/255,8/255
	$(BIN)/edge-denoise train denoiser-d --out $(SCENES_NEXT) --n-train 24000 --epochs 4 \
	  --batch-size 64 --lr 0.0002 --threads 2 --seed 0 --eval-limit 500
	$(BIN)/edge-denoise train host-finetune --out $(SCENES_NEXT) --cut net.features.4 --codec jpeg \
	  --quality 50 --epochs 6 --limit 24000 --test-limit 2000 --threads 2 --lr 0.01 \
	  --tune net.features.5,net.features.6,net.features.7,net.features.8,net.features.9
	$(BIN)/edge-denoise bundle accuracy --bundle $(SCENES_NEXT) --cuts $(NEXT_CUTS) \
	  --codecs q8,jpeg,deepn_jpeg --qualities 5,20,50,90 --limit 2000 --threads 2
	$(BIN)/edge-denoise bundle accuracy --bundle $(SCENES_NEXT) --cuts frame --codecs jpeg,deepn_jpeg \
	  --qualities 5,20,50,90 --limit 2000 --threads 2

# Every figure measured on the realistic profile, again (after its weights change), from a
# clean tree: each command's JSON under out/results (its provenance says dirty=false only while
# nothing is written into the tree), then copied to docs/results and the README's blocks
# rendered. Long (~2 h on 2 cores); bench link needs root (network namespaces, tc).
OUTRES := out/results
scenes-results: setup
	mkdir -p $(OUTRES)
	$(BIN)/edge-denoise bundle show --bundle $(SCENES) --json | tail -n 1 > $(OUTRES)/scenes_bundle.json
	$(BIN)/edge-denoise eval --bundle $(SCENES) --limit 2000 --threads 2 --json | tail -n 1 > $(OUTRES)/scenes_eval.json
	$(BIN)/edge-denoise plan --bundle $(SCENES) --uplink-mbps 2 --edge-slowdown 4 --threads 1 --json | tail -n 1 > $(OUTRES)/scenes_plan_2mbps.json
	$(BIN)/edge-denoise demo --bundle $(SCENES) --json | tail -n 1 > $(OUTRES)/scenes_demo.json
	$(BIN)/edge-denoise demo --bundle $(SCENES) --cut net.features.4 --codec lossless --json | tail -n 1 > $(OUTRES)/scenes_demo_lossless.json
	$(BIN)/edge-denoise bench hosts --bundle $(SCENES) --cut net.features.4 --codec q8 --robots 1,2,4,8,16 --json --plot $(OUTRES)/hosts_scenes.png | tail -n 1 > $(OUTRES)/hosts_scenes.json
	$(BIN)/edge-denoise bench soak --frames 10000 --bundle $(SCENES) --json | tail -n 1 > $(OUTRES)/soak_scenes.json
	$(BIN)/edge-denoise bench link --bundle $(SCENES) --edge-cpus 1 --rates 1,2,5,10,45 --strategies raw,jpeg,jpeg_model,h264,edge,split_lossless,split_jpeg,auto --duration 12 --warmup 3 --out $(OUTRES)/link_1 --json | tail -n 1 > $(OUTRES)/link_scenes_one.json
	$(BIN)/edge-denoise bench link --bundle $(SCENES) --edge-cpus 0.25 --rates 1,2,5,10,45 --strategies raw,jpeg,jpeg_model,h264,edge,split_lossless,split_jpeg,auto --duration 12 --warmup 3 --out $(OUTRES)/link_q --json | tail -n 1 > $(OUTRES)/link_scenes_quarter.json
	cp $(OUTRES)/link_1/link.png $(OUTRES)/link_scenes_one.png
	cp $(OUTRES)/link_q/link.png $(OUTRES)/link_scenes_quarter.png
	cp $(OUTRES)/*.json $(OUTRES)/*.png docs/results/
	$(MAKE) results

# The figures of weights/scenes_next (the profile make demo serves), again, the same way (~30 min).
next-results: setup
	mkdir -p $(OUTRES)
	$(BIN)/edge-denoise bundle show --bundle $(SCENES_NEXT) --json | tail -n 1 > $(OUTRES)/scenes_next_profile.json
	$(BIN)/edge-denoise plan --bundle $(SCENES_NEXT) --uplink-mbps 2 --edge-slowdown 4 --threads 1 --json | tail -n 1 > $(OUTRES)/scenes_next_plan_2mbps.json
	$(BIN)/edge-denoise demo --bundle $(SCENES_NEXT) --json | tail -n 1 > $(OUTRES)/scenes_next_demo.json
	$(BIN)/edge-denoise demo --bundle $(SCENES_NEXT) --cut net.features.4 --codec lossless --json | tail -n 1 > $(OUTRES)/scenes_next_demo_lossless.json
	$(BIN)/edge-denoise eval --bundle $(SCENES_NEXT) --limit 2000 --threads 2 --json | tail -n 1 > $(OUTRES)/scenes_next_eval.json
	cp $(OUTRES)/scenes_next_*.json docs/results/
	$(MAKE) results

clean:
	rm -rf out build install log .pytest_cache
