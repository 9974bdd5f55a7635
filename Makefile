# Two commands on a fresh machine: `make demo` and `make test`.
.PHONY: install demo test soak proto lint typecheck format clean-testbed

install:
	@scripts/install.sh

demo: install
	.venv/bin/mecfed demo --backend direct --systems 2

test: install
	@scripts/run_tests.sh

# The fault-injection suite repeated (SOAK_ROUNDS, default 5); not part of CI.
soak: install
	@scripts/soak.sh

proto: install
	scripts/gen_proto.sh

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

typecheck:
	.venv/bin/mypy

format:
	.venv/bin/ruff check --fix . && .venv/bin/ruff format .

clean-testbed:
	.venv/bin/mecfed testbed down
