//! Magnet URIs (BEP 9, BEP 53): placeholder, being written.
