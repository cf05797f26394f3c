"""Root conftest: the shared fixtures live in plugins under tests/fixtures/."""

pytest_plugins = ["tests.fixtures.stack"]
