//! Tests of the ingest endpoints against a real server on 127.0.0.1.
