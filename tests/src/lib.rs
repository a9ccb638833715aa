//! Shared helpers for the pipeline suites in `tests/tests/`.
