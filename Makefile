# The two commands of the README. Both set up the stack's venv first
# (idempotent; it installs exactly requirements/lock-$(MMET_STACK).txt).
# MMET_STACK picks the OpenMMLab stack: upstream (the default, .venv) or
# onedl, the maintained fork (.venv-onedl). `make lock` refreshes the locks
# of both stacks (docs/development.md, "Locks").
MMET_STACK ?= upstream
export MMET_STACK
VENV_upstream := .venv
VENV_onedl := .venv-onedl
PY = $(VENV_$(MMET_STACK))/bin/python

# The fork's CI subset (.ci/run; docs/development.md "CI"): the hook, the
# ET++ loop, DDP, resume, safe checkpoint loading and every compat fix,
# with what the fork changed (BatchRandAugment against its OpenCV 4, the
# tools' JSON) and the check of its lock. The whole suite on the upstream
# stack plus this subset keep CI inside its 90 minutes; the rest (the COCO
# transfer among it) runs on the fork with `MMET_STACK=onedl make test`.
ONEDL_CI_TESTS := $(addprefix tests/test_,$(addsuffix .py,\
	compat checkpoint_safety checkpoint_security hook etpp_loop \
	distributed resume_curriculum batch_randaug configs \
	etpp_configs transforms stages cli etpp_units adapt bad_inputs \
	strict_checks swin etpp_messages lock))

.PHONY: setup demo test test-onedl-ci lock
setup:
	bash tools/setup_env.sh

demo: setup
	$(PY) tools/demo.py

test: setup
	$(PY) -m pytest tests -q --timeout=900

test-onedl-ci: MMET_STACK := onedl
test-onedl-ci: setup
	$(PY) -m pytest $(ONEDL_CI_TESTS) -q --timeout=900

lock:
	bash tools/refresh_locks.sh
