//! Store conformance: the same tests against SQLite and a fresh PostgreSQL database.

mod conformance;
