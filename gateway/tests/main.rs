//! Tests of the `paotui` binary itself.

mod cli;
