//! Rows read into typed structs: a `FromRow` for `AnyRow`, written by one macro.
//!
//! sqlx's `#[derive(FromRow)]` lives in `sqlx-macros`, which compiles a second sqlx with both drivers and the
//! bundled SQLite for the build host (see [`super::migrations`]). The macro below writes the same impl: each
//! field read by its column name, and fields marked `parsed` read as text and converted with `TryFrom<String>`,
//! so a name the DB holds that is not a value of the type is a decode error, never a guess.

use sqlx::any::AnyRow;
use sqlx::Row;

/// Reads column `col` as text and converts it.
pub(crate) fn parsed<T>(row: &AnyRow, col: &str) -> Result<T, sqlx::Error>
where
    T: TryFrom<String, Error = String>,
{
    let text: String = row.try_get(col)?;
    T::try_from(text).map_err(|e| sqlx::Error::ColumnDecode {
        index: col.to_string(),
        source: e.into(),
    })
}

/// `from_row!(Type { field, other: parsed, … })` implements `FromRow<AnyRow>` for `Type`.
macro_rules! from_row {
    ($ty:ident { $($field:ident $(: $conv:ident)?),* $(,)? }) => {
        impl<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> for $ty {
            fn from_row(row: &'r sqlx::any::AnyRow) -> Result<Self, sqlx::Error> {
                #[allow(unused_imports)]
                use sqlx::Row as _;
                Ok($ty { $($field: $crate::db::row::from_row!(@get row, $field $(, $conv)?)),* })
            }
        }
    };
    (@get $row:ident, $field:ident) => { $row.try_get(stringify!($field))? };
    (@get $row:ident, $field:ident, parsed) => { $crate::db::row::parsed($row, stringify!($field))? };
}
pub(crate) use from_row;
