//! CSV and Parquet exports as department sources, read through DataFusion.
//!
//! Files are opened for reading only and plans that write are refused (see
//! [`crate::engine`]). A file replaced by a new export is picked up on the next query.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use datafusion::arrow::csv::reader::Format;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::execution::context::SessionContext;
use datafusion::prelude::{CsvReadOptions, ParquetReadOptions};
use paotui_policies::catalog::ParamValue;

use crate::engine::{self, ColumnType};
use crate::source::{BoxFuture, DataSource, Rows, SourceLimits, with_timeout};
use crate::{Error, Result};

/// A CSV or Parquet file queried with the catalog's SQL; the file is the table `table`.
#[derive(Clone)]
pub struct FileSource {
    name: String,
    path: PathBuf,
    ctx: SessionContext,
    limits: SourceLimits,
}

impl std::fmt::Debug for FileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSource")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn unavailable(name: &str, detail: impl Into<String>) -> Error {
    Error::Unavailable {
        source_name: name.to_owned(),
        detail: detail.into(),
    }
}

fn path_str<'p>(name: &str, path: &'p Path) -> Result<&'p str> {
    if !path.is_file() {
        return Err(unavailable(
            name,
            format!("{} does not exist or is not a file", path.display()),
        ));
    }
    path.to_str()
        .ok_or_else(|| unavailable(name, format!("{} is not UTF-8", path.display())))
}

fn extension(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| format!(".{e}"))
        .unwrap_or_default()
}

impl FileSource {
    /// A CSV file with a header line. Columns are text unless `columns` declares their
    /// type: guessing would turn ID numbers into integers and drop leading zeros.
    pub async fn csv(
        name: &str,
        path: &Path,
        table: &str,
        columns: &BTreeMap<String, ColumnType>,
        limits: SourceLimits,
    ) -> Result<Self> {
        let p = path_str(name, path)?;
        let file = std::fs::File::open(path).map_err(|e| unavailable(name, format!("{p}: {e}")))?;
        let (header, _) = Format::default()
            .with_header(true)
            .infer_schema(file, Some(0))
            .map_err(|e| unavailable(name, format!("{p}: {e}")))?;
        let fields: Vec<Field> = header
            .fields()
            .iter()
            .map(|f| {
                let ty = columns.get(f.name()).map_or(DataType::Utf8, |t| t.arrow());
                Field::new(f.name(), ty, true)
            })
            .collect();
        if let Some(missing) = columns.keys().find(|c| header.field_with_name(c).is_err()) {
            return Err(Error::Query {
                source_name: name.to_owned(),
                detail: format!("{p}: declared column {missing:?} is not in the header line"),
            });
        }
        let schema = Schema::new(fields);
        let ext = extension(path);
        let ctx = engine::session();
        ctx.register_csv(
            table,
            p,
            CsvReadOptions::new()
                .has_header(true)
                .schema(&schema)
                .file_extension(&ext),
        )
        .await
        .map_err(|e| unavailable(name, format!("{p}: {e}")))?;
        Ok(Self::opened(name, path, ctx, limits))
    }

    /// A Parquet file; its own schema gives the types.
    pub async fn parquet(
        name: &str,
        path: &Path,
        table: &str,
        limits: SourceLimits,
    ) -> Result<Self> {
        let p = path_str(name, path)?;
        let ext = extension(path);
        let ctx = engine::session();
        ctx.register_parquet(table, p, ParquetReadOptions::new().file_extension(&ext))
            .await
            .map_err(|e| unavailable(name, format!("{p}: {e}")))?;
        Ok(Self::opened(name, path, ctx, limits))
    }
}

impl FileSource {
    fn opened(name: &str, path: &Path, ctx: SessionContext, limits: SourceLimits) -> Self {
        FileSource {
            name: name.to_owned(),
            path: path.to_owned(),
            ctx,
            limits,
        }
    }

    fn check_file(&self) -> Result<()> {
        std::fs::File::open(&self.path)
            .map(|_| ())
            .map_err(|e| unavailable(&self.name, format!("{}: {e}", self.path.display())))
    }
}

impl DataSource for FileSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn query<'a>(&'a self, sql: &'a str, params: &'a [ParamValue]) -> BoxFuture<'a, Result<Rows>> {
        Box::pin(with_timeout(&self.name, self.limits, async move {
            // A listing of a missing file is an empty table: say "unavailable" instead.
            self.check_file()?;
            engine::run(&self.name, self.limits, &self.ctx, sql, params).await
        }))
    }

    fn ping(&self) -> BoxFuture<'_, Result<()>> {
        // Reachable means the export is still there and readable.
        Box::pin(async move { self.check_file() })
    }
}
