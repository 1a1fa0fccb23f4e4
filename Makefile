# The two commands a newcomer needs:
#   make run    set up, migrate, load demo data, serve on http://127.0.0.1:8000 (PORT= overrides)
#   make test   set up and run the whole test suite (SQLite; PostgreSQL too with TEST_DATABASE_URL)
.PHONY: run test setup lint bench clean

setup:
	@scripts/bootstrap.sh requirements-dev.txt

run: setup
	@scripts/run.sh

test: setup
	@bash .ci/pcscd.sh || echo "make test: no PC/SC stack here; the pcsc tests will be skipped (see above)"
	.venv/bin/python -m pytest $(PYTEST_ARGS)

lint: setup
	.venv/bin/ruff check .
	.venv/bin/mypy

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache
