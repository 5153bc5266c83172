//! Binds whose SQL type would otherwise depend on the value, through sqlx's `Any` driver.
//!
//! Postgres prepares a statement once per connection with the parameter types of its first execution, and
//! sqlx caches it. Every bind of one statement must therefore carry the same type whether it holds a value
//! or NULL. sqlx's `Any` driver (0.8.6, and 0.9.0 as well) turns a NULL `f64` into a NULL `float4` while a
//! present `f64` is a `float8`, so a statement first run with `None` rejects the next real value ("incorrect
//! binary data format in bind parameter N"). The other nullable types we bind (`i64`, text) keep one type.
//!
//! Rule: a nullable floating-point column is bound with [`nullable_double`] and written as
//! `CAST($n AS DOUBLE PRECISION)` in the SQL. The parameter is text on both engines, always, and the cast
//! gives the column its float. Rust prints an `f64` in its shortest round-trip form, so no precision is lost.
//! `tests/db_binds.rs` runs every write path with NULL first and a value second on one Postgres connection.

/// A nullable `DOUBLE PRECISION` value as text: `None` stays a (text) NULL.
pub fn nullable_double(v: Option<f64>) -> Option<String> {
    v.filter(|x| x.is_finite()).map(|x| x.to_string())
}

#[cfg(test)]
mod tests {
    use super::nullable_double;

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
