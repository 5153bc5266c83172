//! Content sniffing.
