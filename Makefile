# prewarm: `make demo` and `make test` are all a new machine needs (Debian + Swift 6).
SWIFT ?= swift
SERVICES := redis postgres kafka
WITH_SERVICES := scripts/with-services.sh $(SERVICES) --
# The suite (and make bench) also run on a local 3-primary Redis Cluster.
WITH_TEST_SERVICES := scripts/with-services.sh redis redis-cluster postgres kafka --

.PHONY: deps build test lint demo bench chaos console-screenshot services-up services-down clean

deps: ## install the Debian packages that are missing
	@scripts/deps.sh

build: deps ## debug build of everything
	$(SWIFT) build

lint: deps ## formatting (swift format --strict) and the compose.yaml check
	$(SWIFT) format lint --strict -r Sources Tests Package.swift
	python3 scripts/check-compose.py

# KAFKA=mock or KAFKA=noida runs one broker's pass of `make test`; by default both run, the
# mock's first (see README, "Two Kafka implementations").
KAFKA ?= mock noida

# After each broker's suite, a few `make chaos` scenarios on it (the whole fleet under a fault,
# its invariants recounted): CHAOS_MOCK= and CHAOS_NOIDA= name others, empty skips them.
CHAOS_MOCK ?= baseline kill-push-50 replay failover-push bad-input
CHAOS_NOIDA ?= baseline broker-restart

test: deps lint ## the whole suite and a few chaos scenarios on the dev broker, then on noida-db
	$(SWIFT) build --build-tests
	python3 scripts/check-deploy.py .build/debug
	for kafka in $(KAFKA); do \
	  echo "test: the suite on the $$kafka broker"; \
	  PREWARM_DEV_KAFKA=$$kafka $(WITH_TEST_SERVICES) scripts/test-env.sh $(SWIFT) test --skip-build || exit 1; \
	  case $$kafka in mock) scenarios="$(CHAOS_MOCK)";; noida) scenarios="$(CHAOS_NOIDA)";; *) scenarios="";; esac; \
	  [ -z "$$scenarios" ] && continue; \
	  echo "test: make chaos $$scenarios on the $$kafka broker"; \
	  PREWARM_DEV_KAFKA=$$kafka PREWARM_LOG_LEVEL=warning $(WITH_SERVICES) .build/debug/prewarmctl chaos $$scenarios \
	    || exit 1; \
	done

demo: build ## start the services, run generated traffic through the entry-ingest worker, show what it did
	PREWARM_DEV_KAFKA=$(firstword $(KAFKA)) PREWARM_LOG_LEVEL=warning $(WITH_SERVICES) .build/debug/prewarmctl demo

# `make bench kafka` runs one scenario: the words after `bench` are its arguments; so do
# `make chaos kill-ka-50 replay`'s.
ifeq (bench,$(firstword $(MAKECMDGOALS)))
BENCH_ARGS := $(wordlist 2,$(words $(MAKECMDGOALS)),$(MAKECMDGOALS))
$(eval $(BENCH_ARGS):;@:)
endif
ifeq (chaos,$(firstword $(MAKECMDGOALS)))
CHAOS_ARGS := $(wordlist 2,$(words $(MAKECMDGOALS)),$(MAKECMDGOALS))
$(eval $(CHAOS_ARGS):;@:)
endif
N ?= 1

chaos: build ## the fleet under faults, its invariants checked: make chaos [SCENARIO...] [N=1] [KAFKA=mock|noida] [SEED=s]
	PREWARM_DEV_KAFKA=$(firstword $(KAFKA)) PREWARM_LOG_LEVEL=warning $(WITH_SERVICES) .build/debug/prewarmctl chaos $(CHAOS_ARGS) \
	  --repeat $(N) $(if $(SEED),--seed $(SEED),)

bench: deps ## throughput of the wrappers beside the stock tools (release build)
	$(SWIFT) build -c release
	PREWARMCTL=$(CURDIR)/.build/release/prewarmctl $(WITH_TEST_SERVICES) scripts/bench.sh $(BENCH_ARGS)

services-up: build ## start the local services and leave them running
	scripts/services.sh up $(SERVICES)
	@echo "export them with: set -a; eval \"\$$(scripts/services.sh env)\"; set +a"

services-down: ## stop the local services
	scripts/services.sh stop kafka postgres redis
	PREWARM_DEV_KAFKA=noida scripts/services.sh stop kafka

clean: services-down ## remove build output and service data
	rm -rf .build .run

console-screenshot: build ## run the demo and save the console, during its key-account part, as docs/console.png
	mkdir -p docs
	PREWARM_DEMO_SCREENSHOT=$(CURDIR)/docs/console.png PREWARM_DEV_KAFKA=$(firstword $(KAFKA)) PREWARM_LOG_LEVEL=warning \
	  $(WITH_SERVICES) .build/debug/prewarmctl demo
