//! Binds through sqlx's `Any` driver, typed so that a bind whose SQL type would depend on the value cannot be
//! written.
//!
//! Postgres prepares a statement once per connection with the parameter types of its first execution, and
//! sqlx caches it. Every bind of one statement must therefore carry the same type whether it holds a value
//! or NULL. sqlx's `Any` driver (0.8.6, and 0.9.0 as well) turns a NULL `f64` into a NULL `float4` while a
//! present `f64` is a `float8`, so a statement first run with `None` rejects the next real value ("incorrect
//! binary data format in bind parameter N"). The other nullable types we bind (`i64`, text) keep one type.
//!
//! Rules, enforced by the compiler and clippy:
//! - every bind in `db/` and `scale/store.rs` (the only code that holds the `Any` pools) goes through
//!   [`BindExt::arg`], which takes only the [`Arg`] types: integers, booleans, text and bytes, each also as
//!   `Option`, and a non-null `f64`. A unit test fails on any `.bind(` left in those files;
//! - a nullable floating-point column is bound with [`nullable_double`] (text, NULL or not) and written as
//!   `CAST($n AS DOUBLE PRECISION)` in the SQL; `Option<f64>` is not an [`Arg`], so forgetting it is a
//!   compile error. Rust prints an `f64` in its shortest round-trip form, so no precision is lost.
//!
//! `tests/db_binds.rs` runs every write path with NULL first and a value second on one Postgres connection.

use sqlx::any::AnyArguments;
use sqlx::query::{Query, QueryAs, QueryScalar};
use sqlx::Any;

/// A value that binds with one SQL type whether or not it is NULL.
pub trait Arg<'q>: sqlx::Encode<'q, Any> + sqlx::Type<Any> + Send + 'q {}

impl<'q> Arg<'q> for i64 {}
impl<'q> Arg<'q> for Option<i64> {}
impl<'q> Arg<'q> for &'q i64 {}
impl<'q> Arg<'q> for i32 {}
impl<'q> Arg<'q> for bool {}
impl<'q> Arg<'q> for Option<bool> {}
impl<'q> Arg<'q> for String {}
impl<'q> Arg<'q> for Option<String> {}
impl<'q> Arg<'q> for &'q str {}
impl<'q> Arg<'q> for Option<&'q str> {}
impl<'q> Arg<'q> for &'q String {}
impl<'q> Arg<'q> for Option<&'q String> {}
impl<'q> Arg<'q> for &'q Option<String> {}
impl<'q> Arg<'q> for Vec<u8> {}
impl<'q> Arg<'q> for &'q [u8] {}
/// Never NULL: always a `float8`. A nullable float goes through [`nullable_double`].
impl<'q> Arg<'q> for f64 {}

/// `.arg(v)`: sqlx's `bind`, for [`Arg`] values only.
pub trait BindExt<'q>: Sized {
    /// Binds the next parameter.
    fn arg<T: Arg<'q>>(self, value: T) -> Self;
}

// The one place sqlx's bind is called for the Any driver.
impl<'q> BindExt<'q> for Query<'q, Any, AnyArguments<'q>> {
    fn arg<T: Arg<'q>>(self, value: T) -> Self {
        self.bind(value)
    }
}

impl<'q, O> BindExt<'q> for QueryAs<'q, Any, O, AnyArguments<'q>> {
    fn arg<T: Arg<'q>>(self, value: T) -> Self {
        self.bind(value)
    }
}

impl<'q, O> BindExt<'q> for QueryScalar<'q, Any, O, AnyArguments<'q>> {
    fn arg<T: Arg<'q>>(self, value: T) -> Self {
        self.bind(value)
    }
}

/// A nullable `DOUBLE PRECISION` value as text: `None` stays a (text) NULL.
pub fn nullable_double(v: Option<f64>) -> Option<String> {
    v.filter(|x| x.is_finite()).map(|x| x.to_string())
}

#[cfg(test)]
mod tests {
    use super::nullable_double;

    /// The files that query the `Any` pools bind only through `BindExt::arg`.
    #[test]
    fn no_untyped_binds() {
        let files = [
            ("attempts.rs", include_str!("attempts.rs")),
            ("keys.rs", include_str!("keys.rs")),
            ("media.rs", include_str!("media.rs")),
            ("migrations.rs", include_str!("migrations.rs")),
            ("mod.rs", include_str!("mod.rs")),
            ("objects.rs", include_str!("objects.rs")),
            ("ops.rs", include_str!("ops.rs")),
            ("outbox.rs", include_str!("outbox.rs")),
            ("overrides.rs", include_str!("overrides.rs")),
            ("reprocess.rs", include_str!("reprocess.rs")),
            ("retention.rs", include_str!("retention.rs")),
            ("row.rs", include_str!("row.rs")),
            ("steer.rs", include_str!("steer.rs")),
            ("uploads.rs", include_str!("uploads.rs")),
            ("work.rs", include_str!("work.rs")),
            ("../scale/store.rs", include_str!("../scale/store.rs")),
        ];
        let needle = [".", "bind("].concat();
        for (name, text) in files {
            for (n, line) in text.lines().enumerate() {
                assert!(
                    !line.contains(&needle),
                    "db/{name}:{}: bind through BindExt::arg, not sqlx's bind: {line}",
                    n + 1
                );
            }
        }
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/db");
        let mut listed: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".rs") && n != "bind.rs")
            .collect();
        listed.sort();
        let mut known: Vec<&str> = files
            .iter()
            .map(|f| f.0)
            .filter(|n| !n.contains('/'))
            .collect();
        known.sort();
        assert_eq!(listed, known, "a new file in src/db must be listed here");
    }

    #[test]
    fn round_trips_exactly() {
        for x in [0.0, 1.5, 12.345678901234567, 1e-9, 3600.04, f64::MAX] {
            let s = nullable_double(Some(x)).unwrap();
            assert_eq!(s.parse::<f64>().unwrap(), x);
        }
        assert_eq!(nullable_double(None), None);
        assert_eq!(nullable_double(Some(f64::NAN)), None);
    }
}
