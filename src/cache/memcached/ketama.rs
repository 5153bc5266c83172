//! Server selection for a memcached pool, identical to libmemcached's with `MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED`,
//! which is what PHP's `Memcached::OPT_LIBKETAMA_COMPATIBLE` sets (libmemcached `hosts.cc`
//! `update_continuum`, `hash.cc` `dispatch_host`, libhashkit `md5.cc`):
//!
//! - each server gets `floor(weight/total · 160/4 · servers + 1e-10) · 4` points (160 for equal weights; the
//!   weight of every server here is 1, as PHP's `addServer` default of 0 becomes 1 in libmemcached);
//! - the points of server `s` come from the MD5 of `"{host}-{i}"` when its port is 11211 and
//!   `"{host}:{port}-{i}"` otherwise, `i` from 0; each digest gives 4 points, its bytes `4a..4a+4` read
//!   little-endian (`a` in 0..4);
//! - points are sorted by value (ties by server index, the order servers were given);
//! - a key's hash is its MD5's first 4 bytes, little-endian; its server is the first point whose value is
//!   `>=` the hash, wrapping to the first point; a pool of one server takes every key.

use md5::{Digest, Md5};

use crate::config::MemcachedServer;

/// libmemcached's `MEMCACHED_POINTS_PER_SERVER_KETAMA`.
const POINTS_PER_SERVER: u32 = 160;
/// Points per MD5 digest in weighted mode.
const POINTS_PER_HASH: u32 = 4;
/// libmemcached's `MEMCACHED_DEFAULT_PORT`: left out of the point names.
const DEFAULT_PORT: u16 = 11211;

/// The continuum of a pool.
#[derive(Debug, Clone)]
pub struct Ketama {
    points: Vec<(u32, usize)>,
    servers: usize,
}

fn md5(data: &[u8]) -> [u8; 16] {
    Md5::digest(data).into()
}

fn le(d: &[u8; 16], at: usize) -> u32 {
    u32::from_le_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]])
}

impl Ketama {
    /// The continuum of `servers`, in the order given (which must be the PHP side's `addServer` order only
    /// for ties; the points themselves do not depend on order).
    pub fn new(servers: &[MemcachedServer]) -> Self {
        let n = servers.len();
        // Equal weights: pct = 1/n, so per-server points = floor(1/n · 40 · n + 1e-10) · 4 in f32, as in C.
        let live = n as f32;
        let per_server = if n == 0 {
            0
        } else {
            let pct = 1.0f32 / live;
            (((pct * POINTS_PER_SERVER as f32 / 4.0 * live) + 0.000_000_000_1f32).floor() as u32)
                * 4
        };
        let mut points = Vec::with_capacity(n * per_server as usize);
        for (index, s) in servers.iter().enumerate() {
            for i in 0..per_server / POINTS_PER_HASH {
                let name = if s.port == DEFAULT_PORT {
                    format!("{}-{i}", s.host)
                } else {
                    format!("{}:{}-{i}", s.host, s.port)
                };
                let d = md5(name.as_bytes());
                for a in 0..POINTS_PER_HASH as usize {
                    points.push((le(&d, a * 4), index));
                }
            }
        }
        points.sort_unstable();
        Ketama { points, servers: n }
    }

    /// libmemcached's key hash with `MEMCACHED_HASH_MD5`.
    pub fn hash(key: &[u8]) -> u32 {
        le(&md5(key), 0)
    }

    /// The index of the server that holds `key`.
    pub fn server_for(&self, key: &[u8]) -> usize {
        if self.servers <= 1 || self.points.is_empty() {
            return 0;
        }
        let h = Self::hash(key);
        let i = self.points.partition_point(|(v, _)| *v < h);
        self.points.get(i).unwrap_or(&self.points[0]).1
    }

    /// Number of points (160 per server).
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(host: &str, port: u16) -> MemcachedServer {
        MemcachedServer {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn one_hundred_sixty_points_per_server_and_md5_little_endian() {
        let k = Ketama::new(&[
            s("10.0.0.1", 11211),
            s("10.0.0.2", 11212),
            s("10.0.0.3", 11213),
        ]);
        assert_eq!(k.len(), 480);
        // MD5("") = d41d8cd98f00b204e9800998ecf8427e: the first four bytes, little-endian.
        assert_eq!(Ketama::hash(b""), 0xd98c_1dd4);
        // The default port is left out of the point names: "10.0.0.1-0" is a point of server 0.
        let d = md5(b"10.0.0.1-0");
        let p = le(&d, 0);
        assert!(k.points.contains(&(p, 0)));
        let d = md5(b"10.0.0.2:11212-39");
        assert!(k.points.contains(&(le(&d, 12), 1)));
    }

    #[test]
    fn keys_spread_and_move_little_when_a_server_is_added() {
        let three = Ketama::new(&[s("a", 11211), s("b", 11211), s("c", 11211)]);
        let four = Ketama::new(&[s("a", 11211), s("b", 11211), s("c", 11211), s("d", 11211)]);
        let mut per = [0usize; 3];
        let mut moved = 0;
        for i in 0..3000 {
            let key = format!("mediafleet:media:{i}");
            let a = three.server_for(key.as_bytes());
            per[a] += 1;
            if four.server_for(key.as_bytes()) != a {
                moved += 1;
            }
        }
        assert!(per.iter().all(|n| *n > 600), "{per:?}");
        assert!(moved < 1200, "{moved} of 3000 keys moved");
    }

    #[test]
    fn a_single_server_takes_every_key() {
        let one = Ketama::new(&[s("a", 1)]);
        assert_eq!(one.server_for(b"anything"), 0);
    }
}
