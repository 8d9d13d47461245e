"""End-to-end tests: the developer commands themselves (`make run`), real servers, real processes."""
