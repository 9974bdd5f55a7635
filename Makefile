# Two commands on a fresh machine: `make demo` and `make test`.
.PHONY: install demo test proto lint typecheck format clean-testbed

install:
	@scripts/install.sh

demo: install
	.venv/bin/mecfed demo --backend direct --systems 2

test: install
	@scripts/run_tests.sh

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
