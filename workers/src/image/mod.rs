//! Image renditions: decode, resize, encode, hash.
