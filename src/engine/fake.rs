//! An in-memory engine for tests of the broker's and lifecycle's decisions (no Docker, no root).
