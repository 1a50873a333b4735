//! Shared helpers for bt's end-to-end tests.
