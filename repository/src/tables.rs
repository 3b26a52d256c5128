//! The store's tables for DataFusion (auditor SQL, supervision figures).
//!
//! Each table is a [`TableProvider`] over the live store, either backend: a scan reads the
//! store page by page (keyset paging on the primary key, so memory stays bounded however
//! large the log), pushes the time and index ranges of the query's filters into the store
//! query, stops at the query's `LIMIT`, and builds only the projected columns. A scan of
//! the audit log is split into contiguous index ranges, one per partition. DataFusion
//! re-applies every filter (they are pushed down as `Inexact`), so a filter the store
//! cannot use only costs time, never correctness.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Int32Array, Int64Array, RecordBatch, RecordBatchOptions,
    StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Statistics;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, ScalarValue, project_schema};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{
    BinaryExpr, Expr, Operator, TableProviderFilterPushDown, TableType,
};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, StatisticsArgs,
};

use crate::{AuditEntry, Store};

/// Rows per store query and per batch.
const PAGE: i64 = 8192;

/// The most index ranges one audit scan is split into (see [`split`]): half the SQLite
/// store's four reader connections, a quarter of the PostgreSQL pool's eight, so that
/// governed reads keep connections while an auditor scans the whole log.
const MAX_SCAN_PARTS: usize = 2;

/// The columns of the `audit` table, in order (documented in the README).
const AUDIT_COLUMNS: [(&str, Col); 18] = [
    ("idx", Col::Int64),
    ("at", Col::Timestamp),
    ("request_id", Col::Utf8),
    ("caller_dept", Col::Utf8),
    ("caller_system", Col::Utf8),
    ("caller_serial", Col::Utf8),
    ("operator", Col::Utf8),
    ("action", Col::Utf8),
    ("service", Col::Utf8),
    ("case_id", Col::Utf8),
    ("matter", Col::Utf8),
    ("outcome", Col::Utf8),
    ("status", Col::Int32),
    ("reason", Col::Utf8),
    ("subject_hmac", Col::Utf8),
    ("fields", Col::Utf8),
    ("allowed", Col::Bool),
    ("policies", Col::Utf8),
];

#[derive(Debug, Clone, Copy)]
enum Col {
    Int64,
    Int32,
    Utf8,
    Bool,
    Timestamp,
}

/// The `audit` table's schema: one row per audit entry. `at` is UTC; `fields` and
/// `policies` are JSON arrays as text; `allowed` is null for entries without a decision.
pub fn audit_schema() -> SchemaRef {
    let fields: Vec<Field> = AUDIT_COLUMNS
        .iter()
        .map(|(name, col)| {
            let (ty, nullable) = match col {
                Col::Int64 => (DataType::Int64, false),
                Col::Int32 => (DataType::Int32, false),
                Col::Bool => (DataType::Boolean, true),
                Col::Timestamp => (
                    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                    false,
                ),
                Col::Utf8 => (
                    DataType::Utf8,
                    !matches!(*name, "request_id" | "action" | "outcome"),
                ),
            };
            Field::new(*name, ty, nullable)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// The ranges a scan reads: `idx` in `[idx.0, idx.1)`, `at_us` in `[at.0, at.1)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ranges {
    idx: (i64, i64),
    at: (i64, i64),
}

impl Default for Ranges {
    fn default() -> Self {
        Ranges {
            idx: (0, i64::MAX),
            at: (i64::MIN, i64::MAX),
        }
    }
}

/// A comparison of the index column (`index`, when the table has one) or the time column
/// (`time`) with a literal, as (whether it is the index, op, value): the value is an
/// index, or microseconds for the time column.
fn comparison(e: &Expr, index: Option<&str>, time: &str) -> Option<(bool, Operator, i64)> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = e else {
        return None;
    };
    let (col, lit, op) = match (left.as_ref(), right.as_ref()) {
        (Expr::Column(c), Expr::Literal(v, _)) => (c, v, *op),
        (Expr::Literal(v, _), Expr::Column(c)) => (c, v, op.swap()?),
        _ => return None,
    };
    if !matches!(
        op,
        Operator::Eq | Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq
    ) {
        return None;
    }
    let name = col.name.as_str();
    if Some(name) == index {
        return match lit {
            ScalarValue::Int64(Some(v)) => Some((true, op, *v)),
            ScalarValue::Int32(Some(v)) => Some((true, op, i64::from(*v))),
            _ => None,
        };
    }
    (name == time)
        .then(|| micros(lit))
        .flatten()
        .map(|us| (false, op, us))
}

/// A timestamp literal in microseconds (rounded so that the range still holds every row
/// the filter keeps; DataFusion applies the exact filter after the scan).
fn micros(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::TimestampSecond(Some(s), _) => s.checked_mul(1_000_000),
        ScalarValue::TimestampMillisecond(Some(ms), _) => ms.checked_mul(1_000),
        ScalarValue::TimestampMicrosecond(Some(us), _) => Some(*us),
        ScalarValue::TimestampNanosecond(Some(ns), _) => Some(ns.div_euclid(1_000)),
        _ => None,
    }
}

impl Ranges {
    /// Narrows to what the conjunction of `filters` on the audit table can keep.
    fn of(filters: &[Expr]) -> Ranges {
        Self::of_columns(filters, Some("idx"), "at")
    }

    /// Narrows to what the conjunction of `filters` on the index column `index` and the
    /// time column `time` can keep.
    fn of_columns(filters: &[Expr], index: Option<&str>, time: &str) -> Ranges {
        let mut r = Ranges::default();
        for (is_index, op, v) in filters.iter().filter_map(|f| comparison(f, index, time)) {
            let range = if is_index { &mut r.idx } else { &mut r.at };
            match op {
                Operator::Eq => {
                    range.0 = range.0.max(v);
                    range.1 = range.1.min(v.saturating_add(1));
                }
                Operator::Gt => range.0 = range.0.max(v.saturating_add(1)),
                Operator::GtEq => range.0 = range.0.max(v),
                // `at < t` with t rounded down from nanoseconds must keep t's microsecond.
                Operator::Lt if is_index => range.1 = range.1.min(v),
                Operator::Lt | Operator::LtEq => range.1 = range.1.min(v.saturating_add(1)),
                _ => {}
            }
        }
        r
    }

    fn is_empty(&self) -> bool {
        self.idx.0 >= self.idx.1 || self.at.0 >= self.at.1
    }
}

/// The audit log as a table (`audit`).
#[derive(Debug, Clone)]
pub struct AuditTable {
    store: Store,
    schema: SchemaRef,
    page: i64,
    from: i64,
}

impl AuditTable {
    pub fn new(store: Store) -> Self {
        AuditTable {
            store,
            schema: audit_schema(),
            page: PAGE,
            from: 0,
        }
    }

    /// Reads `rows` entries per store query (default 8192; smaller in tests so paging is
    /// exercised on a small log).
    pub fn with_page_size(mut self, rows: i64) -> Self {
        self.page = rows.max(1);
        self
    }

    /// Only entries from index `idx` on (those before it are read from the archive).
    pub fn starting_at(mut self, idx: i64) -> Self {
        self.from = idx.max(0);
        self
    }
}

#[async_trait]
impl TableProvider for AuditTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::common::Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| match comparison(f, Some("idx"), "at") {
                Some(_) => TableProviderFilterPushDown::Inexact,
                None => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        let schema = project_schema(&self.schema, projection)?;
        let columns = match projection {
            Some(p) => p.clone(),
            None => (0..AUDIT_COLUMNS.len()).collect(),
        };
        let ranges = {
            let mut r = Ranges::of(filters);
            r.idx.0 = r.idx.0.max(self.from);
            r
        };
        // The log's end is one primary-key seek; the entries in the index range are an
        // upper bound of what the scan returns (its time range may keep fewer).
        let end = self
            .store
            .next_index()
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let end = i64::try_from(end).unwrap_or(i64::MAX).min(ranges.idx.1);
        let rows = usize::try_from(end.saturating_sub(ranges.idx.0)).unwrap_or(0);
        let rows = limit.map_or(rows, |l| rows.min(l));
        let parts: Vec<Arc<dyn PartitionStream>> = split(
            ranges,
            end,
            self.page,
            state.config().target_partitions().min(MAX_SCAN_PARTS),
            limit,
        )
        .into_iter()
        .map(|ranges| -> Arc<dyn PartitionStream> {
            Arc::new(AuditPartition {
                page: self.page,
                store: self.store.clone(),
                schema: Arc::clone(&schema),
                columns: columns.clone(),
                ranges,
                limit,
            })
        })
        .collect();
        let scan = StreamingTableExec::try_new(Arc::clone(&schema), parts, None, [], false, limit)?;
        Ok(Arc::new(EstimatedRows {
            inner: Arc::new(scan),
            rows,
        }))
    }
}

/// Splits a scan of `ranges` over a log whose next index is `end` into at most
/// `partitions` contiguous index ranges, so that reading and decoding the store's pages
/// runs on more than one core (a scan's pages are otherwise read one after the other,
/// each waiting for the last one's batch to be consumed). Scans with a `LIMIT` and scans
/// of fewer than two pages a partition stay whole. The last range keeps the scan's own
/// upper bound, so entries appended after planning are read as before.
fn split(
    ranges: Ranges,
    end: i64,
    page: i64,
    partitions: usize,
    limit: Option<usize>,
) -> Vec<Ranges> {
    let (from, to) = (ranges.idx.0, end.min(ranges.idx.1));
    let rows = to.saturating_sub(from);
    let wanted = i64::try_from(partitions).unwrap_or(1).max(1);
    let n = if limit.is_some() || ranges.is_empty() {
        1
    } else {
        wanted.min(rows / page.saturating_mul(2).max(1)).max(1)
    };
    let step = rows / n;
    (0..n)
        .map(|k| {
            let lo = from + k * step;
            let hi = if k + 1 == n { ranges.idx.1 } else { lo + step };
            Ranges {
                idx: (lo, hi),
                at: ranges.at,
            }
        })
        .collect()
}

/// A store scan with an estimate of its row count. DataFusion's join planning puts the
/// smaller input on the hash table's side only when both inputs have a row count; a scan
/// without one (as `StreamingTableExec` is) keeps the order the query was written in, so
/// `audit JOIN cases` hashed the whole log instead of the cases. The estimate is
/// `Inexact`: it steers plans, never answers.
#[derive(Debug)]
struct EstimatedRows {
    inner: Arc<dyn ExecutionPlan>,
    rows: usize,
}

impl DisplayAs for EstimatedRows {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "EstimatedRows: rows~{}, ", self.rows)?;
        self.inner.fmt_as(t, f)
    }
}

impl ExecutionPlan for EstimatedRows {
    fn name(&self) -> &'static str {
        "EstimatedRows"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.inner.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> datafusion::common::Result<TreeNodeRecursion>,
    ) -> datafusion::common::Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "a store scan has no children to replace".into(),
            ))
        }
    }

    fn fetch(&self) -> Option<usize> {
        self.inner.fetch()
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> datafusion::common::Result<SendableRecordBatchStream> {
        self.inner.execute(partition, context)
    }

    fn statistics_from_inputs(
        &self,
        _inputs: &[Arc<Statistics>],
        _args: &StatisticsArgs,
    ) -> datafusion::common::Result<Arc<Statistics>> {
        let mut stats = Statistics::new_unknown(&self.inner.schema());
        stats.num_rows = Precision::Inexact(self.rows);
        Ok(Arc::new(stats))
    }
}

#[derive(Debug)]
struct AuditPartition {
    page: i64,
    store: Store,
    schema: SchemaRef,
    /// Indices into [`AUDIT_COLUMNS`] of the projected columns.
    columns: Vec<usize>,
    ranges: Ranges,
    limit: Option<usize>,
}

impl PartitionStream for AuditPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        struct State {
            page: i64,
            store: Store,
            schema: SchemaRef,
            columns: Vec<usize>,
            ranges: Ranges,
            left: usize,
        }
        let start = State {
            page: self.page,
            store: self.store.clone(),
            schema: Arc::clone(&self.schema),
            columns: self.columns.clone(),
            ranges: self.ranges,
            left: self.limit.unwrap_or(usize::MAX),
        };
        let pages = futures_util::stream::unfold(start, |mut st| async move {
            if st.left == 0 || st.ranges.is_empty() {
                return None;
            }
            let want = i64::try_from(st.left).unwrap_or(st.page).min(st.page);
            let page = match st.store.audit_page(st.ranges.idx, st.ranges.at, want).await {
                Ok(p) => p,
                Err(e) => {
                    st.left = 0;
                    return Some((Err(DataFusionError::External(Box::new(e))), st));
                }
            };
            let last = page.last().map(|e| e.index);
            match last {
                None => None,
                Some(last) => {
                    st.left = if (page.len() as i64) < want {
                        0
                    } else {
                        st.left.saturating_sub(page.len())
                    };
                    st.ranges.idx.0 = i64::try_from(last).unwrap_or(i64::MAX).saturating_add(1);
                    let batch = audit_batch(&st.schema, &st.columns, &page);
                    Some((batch, st))
                }
            }
        });
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            pages,
        ))
    }
}

/// The projected `columns` of `entries` as a batch of `schema`.
fn audit_batch(
    schema: &SchemaRef,
    columns: &[usize],
    entries: &[AuditEntry],
) -> datafusion::common::Result<RecordBatch> {
    let json = |v: &[String]| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
    let arrays: Vec<ArrayRef> = columns
        .iter()
        .map(|&c| -> ArrayRef {
            let s = |f: &dyn Fn(&AuditEntry) -> Option<String>| -> ArrayRef {
                Arc::new(entries.iter().map(f).collect::<StringArray>())
            };
            match AUDIT_COLUMNS.get(c).map(|(n, _)| *n).unwrap_or("") {
                "idx" => Arc::new(Int64Array::from_iter_values(
                    entries
                        .iter()
                        .map(|e| i64::try_from(e.index).unwrap_or(i64::MAX)),
                )),
                "at" => Arc::new(
                    TimestampMicrosecondArray::from_iter_values(
                        entries.iter().map(|e| e.entry.at_us),
                    )
                    .with_timezone("UTC"),
                ),
                "status" => Arc::new(Int32Array::from_iter_values(
                    entries.iter().map(|e| i32::from(e.entry.status)),
                )),
                "allowed" => Arc::new(
                    entries
                        .iter()
                        .map(|e| e.entry.decision.as_ref().map(|d| d.allowed))
                        .collect::<BooleanArray>(),
                ),
                "request_id" => s(&|e| Some(e.entry.request_id.clone())),
                "caller_dept" => s(&|e| e.entry.caller_dept.clone()),
                "caller_system" => s(&|e| e.entry.caller_system.clone()),
                "caller_serial" => s(&|e| e.entry.caller_serial.clone()),
                "operator" => s(&|e| e.entry.operator.clone()),
                "action" => s(&|e| Some(e.entry.action.clone())),
                "service" => s(&|e| e.entry.service.clone()),
                "case_id" => s(&|e| e.entry.case_id.clone()),
                "matter" => s(&|e| e.entry.matter.clone()),
                "outcome" => s(&|e| Some(e.entry.outcome.as_str().to_owned())),
                "reason" => s(&|e| e.entry.reason.clone()),
                "subject_hmac" => s(&|e| e.entry.subject_hmac.clone()),
                "fields" => s(&|e| Some(json(&e.entry.fields))),
                "policies" => s(&|e| e.entry.decision.as_ref().map(|d| json(&d.policies))),
                // Not reached: `columns` come from the schema's own indices.
                _ => s(&|_| None),
            }
        })
        .collect();
    // `count(*)` projects no column at all: the batch then carries only its row count.
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(schema),
        arrays,
        &RecordBatchOptions::new().with_row_count(Some(entries.len())),
    )?)
}

/// How a column of a store table is typed for DataFusion (and read from the store).
#[derive(Debug, Clone, Copy)]
enum Kind {
    Int64,
    Utf8,
    /// Unix microseconds in the store, a UTC timestamp in SQL.
    Micros,
    /// `YYYY-MM-DD` text in the store, a date in SQL.
    Date,
}

/// A column of a store table: its name in SQL, the store expression that reads it, and
/// its type.
#[derive(Debug)]
struct Column(&'static str, &'static str, Kind);

/// A table over one store table, scanned in keyset pages.
#[derive(Debug)]
pub struct TableSpec {
    /// The name auditors query it by.
    pub name: &'static str,
    /// What it holds (for the docs and `--help`).
    pub about: &'static str,
    from: &'static str,
    /// A unique store expression the pages follow, read as `key_read`.
    key: &'static str,
    key_read: Read,
    /// The time column a range filter is pushed down on, if any.
    time: Option<&'static str>,
    columns: &'static [Column],
}

use crate::store::{Cell, Read};
use Kind::{Date, Int64, Micros, Utf8};

/// The store's tables besides `audit`: cases and their events, matters and ratings; the
/// vault's license metadata (never a document), status history and uses.
pub static TABLES: [TableSpec; 7] = [
    TableSpec {
        name: "cases",
        about: "one row per case (办件): status, accepting site, applicant kind and HMAC, when accepted and closed",
        from: "cases",
        key: "id",
        key_read: Read::Text,
        time: Some("accepted_at"),
        columns: &[
            Column("id", "id", Utf8),
            Column("status", "status", Utf8),
            Column("applicant_kind", "applicant_kind", Utf8),
            Column("applicant_hmac", "applicant_hmac", Utf8),
            Column("site_dept", "site_dept", Utf8),
            Column("site_system", "site_system", Utf8),
            Column("operator", "operator", Utf8),
            Column("accepted_at", "accepted_at_us", Micros),
            Column("accepted_on", "accepted_on", Date),
            Column("closed_at", "closed_at_us", Micros),
        ],
    },
    TableSpec {
        name: "case_matters",
        about: "the matters of each case: owning (handling) department and deadline (null: immediate)",
        from: "case_matters",
        key: "case_id || '/' || matter",
        key_read: Read::Text,
        time: None,
        columns: &[
            Column("case_id", "case_id", Utf8),
            Column("matter", "matter", Utf8),
            Column("owner", "owner", Utf8),
            Column("deadline", "deadline", Date),
        ],
    },
    TableSpec {
        name: "case_events",
        about: "every event of every case (accepted, supplemented, approved, completed, rejected) with who and when",
        from: "case_events",
        key: "seq",
        key_read: Read::Int,
        time: Some("at"),
        columns: &[
            Column("seq", "seq", Int64),
            Column("case_id", "case_id", Utf8),
            Column("at", "at_us", Micros),
            Column("event", "event", Utf8),
            Column("by_dept", "by_dept", Utf8),
            Column("by_system", "by_system", Utf8),
            Column("operator", "operator", Utf8),
            Column("note", "note", Utf8),
        ],
    },
    TableSpec {
        name: "evaluations",
        about: "the applicant's rating of each closed case (一事一评, 1-5)",
        from: "case_evaluations",
        key: "case_id",
        key_read: Read::Text,
        time: Some("at"),
        columns: &[
            Column("case_id", "case_id", Utf8),
            Column("at", "at_us", Micros),
            Column("score", "CAST(score AS BIGINT)", Int64),
            Column("comment", "comment", Utf8),
        ],
    },
    TableSpec {
        name: "licenses",
        about: "license metadata (no document): type, issuer, holder kind and HMAC, stored status, validity",
        from: "licenses",
        key: "id",
        key_read: Read::Text,
        time: Some("issued_at"),
        columns: &[
            Column("id", "id", Utf8),
            Column("type_code", "type_code", Utf8),
            Column("issuer", "issuer", Utf8),
            Column("holder_kind", "holder_kind", Utf8),
            Column("holder_hmac", "holder_hmac", Utf8),
            Column("status", "status", Utf8),
            Column("valid_from", "valid_from", Date),
            Column("valid_until", "valid_until", Date),
            Column("issued_at", "issued_at_us", Micros),
            Column("source", "source", Utf8),
        ],
    },
    TableSpec {
        name: "license_events",
        about: "license status changes (suspend, restore, revoke) with who, when and why",
        from: "license_events",
        key: "seq",
        key_read: Read::Int,
        time: Some("at"),
        columns: &[
            Column("seq", "seq", Int64),
            Column("license_id", "license_id", Utf8),
            Column("at", "at_us", Micros),
            Column("from_status", "from_status", Utf8),
            Column("to_status", "to_status", Utf8),
            Column("reason", "reason", Utf8),
            Column("by_dept", "by_dept", Utf8),
            Column("by_system", "by_system", Utf8),
            Column("operator", "operator", Utf8),
        ],
    },
    TableSpec {
        name: "license_uses",
        about: "every reuse of a stored license for a case (用证): which license, by whom, for which case and matter",
        from: "license_uses",
        key: "seq",
        key_read: Read::Int,
        time: Some("at"),
        columns: &[
            Column("seq", "seq", Int64),
            Column("license_id", "license_id", Utf8),
            Column("at", "at_us", Micros),
            Column("caller_dept", "caller_dept", Utf8),
            Column("caller_system", "caller_system", Utf8),
            Column("operator", "operator", Utf8),
            Column("case_id", "case_id", Utf8),
            Column("matter", "matter", Utf8),
        ],
    },
];

impl TableSpec {
    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|Column(name, _, kind)| {
                    let ty = match kind {
                        Int64 => DataType::Int64,
                        Utf8 => DataType::Utf8,
                        Micros => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                        Date => DataType::Date32,
                    };
                    Field::new(*name, ty, true)
                })
                .collect::<Vec<_>>(),
        ))
    }

    /// The page query: key, projected columns; bound with the key to start after, the
    /// time range and the page size (`$n` placeholders, which both backends take).
    fn page_sql(&self, columns: &[usize]) -> String {
        let p = |n: usize| format!("${n}");
        let mut select = vec![self.key.to_owned()];
        select.extend(
            columns
                .iter()
                .filter_map(|&c| self.columns.get(c))
                .map(|c| c.1.to_owned()),
        );
        // Without a time column the range is always the whole line.
        let time = self
            .time
            .and_then(|t| self.columns.iter().find(|c| c.0 == t))
            .map_or("0", |c| c.1);
        format!(
            "SELECT {} FROM {} WHERE {key} > {} AND {time} >= {} AND {time} < {} ORDER BY {key} LIMIT {}",
            select.join(", "),
            self.from,
            p(1),
            p(2),
            p(3),
            p(4),
            key = self.key,
        )
    }

    /// The cells of `rows` (key first) as a batch of the projected `columns`.
    fn batch(
        &self,
        schema: &SchemaRef,
        columns: &[usize],
        rows: &[Vec<Cell>],
    ) -> datafusion::common::Result<RecordBatch> {
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
        let arrays: Vec<ArrayRef> = columns
            .iter()
            .enumerate()
            .map(|(i, &c)| -> ArrayRef {
                let cell = |r: &Vec<Cell>| r.get(i + 1).cloned().unwrap_or(Cell::Null);
                let int = |r: &Vec<Cell>| match cell(r) {
                    Cell::Int(v) => Some(v),
                    _ => None,
                };
                let text = |r: &Vec<Cell>| match cell(r) {
                    Cell::Text(t) => Some(t),
                    _ => None,
                };
                match self.columns.get(c).map(|c| c.2) {
                    Some(Int64) => Arc::new(rows.iter().map(int).collect::<Int64Array>()),
                    Some(Micros) => Arc::new(
                        rows.iter()
                            .map(int)
                            .collect::<TimestampMicrosecondArray>()
                            .with_timezone("UTC"),
                    ),
                    Some(Date) => Arc::new(
                        rows.iter()
                            .map(|r| {
                                text(r)
                                    .and_then(|t| {
                                        chrono::NaiveDate::parse_from_str(&t, "%Y-%m-%d").ok()
                                    })
                                    .and_then(|d| i32::try_from((d - epoch).num_days()).ok())
                            })
                            .collect::<Date32Array>(),
                    ),
                    Some(Utf8) | None => Arc::new(rows.iter().map(text).collect::<StringArray>()),
                }
            })
            .collect();
        Ok(RecordBatch::try_new_with_options(
            Arc::clone(schema),
            arrays,
            &RecordBatchOptions::new().with_row_count(Some(rows.len())),
        )?)
    }
}

/// One of [`TABLES`] over the live store.
#[derive(Debug, Clone)]
pub struct StoreTable {
    store: Store,
    spec: &'static TableSpec,
    schema: SchemaRef,
    page: i64,
}

impl StoreTable {
    pub fn new(store: Store, spec: &'static TableSpec) -> Self {
        StoreTable {
            store,
            spec,
            schema: spec.schema(),
            page: PAGE,
        }
    }

    /// Reads `rows` per store query (as [`AuditTable::with_page_size`]).
    pub fn with_page_size(mut self, rows: i64) -> Self {
        self.page = rows.max(1);
        self
    }
}

#[async_trait]
impl TableProvider for StoreTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::common::Result<Vec<TableProviderFilterPushDown>> {
        let time = self.spec.time.unwrap_or("");
        Ok(filters
            .iter()
            .map(|f| match comparison(f, None, time) {
                Some(_) => TableProviderFilterPushDown::Inexact,
                None => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        let schema = project_schema(&self.schema, projection)?;
        let columns = match projection {
            Some(p) => p.clone(),
            None => (0..self.spec.columns.len()).collect(),
        };
        let time = self.spec.time.unwrap_or("");
        let part = StorePartition {
            sql: self.spec.page_sql(&columns),
            reads: std::iter::once(self.spec.key_read)
                .chain(
                    columns
                        .iter()
                        .filter_map(|&c| self.spec.columns.get(c))
                        .map(|c| match c.2 {
                            Int64 | Micros => Read::Int,
                            Utf8 | Date => Read::Text,
                        }),
                )
                .collect(),
            columns,
            store: self.store.clone(),
            spec: self.spec,
            schema: Arc::clone(&schema),
            time: Ranges::of_columns(filters, None, time).at,
            limit,
            page: self.page,
        };
        Ok(Arc::new(StreamingTableExec::try_new(
            schema,
            vec![Arc::new(part)],
            None,
            [],
            false,
            limit,
        )?))
    }
}

#[derive(Debug)]
struct StorePartition {
    sql: String,
    reads: Vec<Read>,
    columns: Vec<usize>,
    store: Store,
    spec: &'static TableSpec,
    schema: SchemaRef,
    time: (i64, i64),
    limit: Option<usize>,
    page: i64,
}

impl PartitionStream for StorePartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        struct State {
            part: Arc<StorePartition>,
            after: Cell,
            left: usize,
        }
        let part = Arc::new(StorePartition {
            sql: self.sql.clone(),
            reads: self.reads.clone(),
            columns: self.columns.clone(),
            store: self.store.clone(),
            spec: self.spec,
            schema: Arc::clone(&self.schema),
            time: self.time,
            limit: self.limit,
            page: self.page,
        });
        let start = State {
            after: match self.spec.key_read {
                Read::Int => Cell::Int(i64::MIN),
                Read::Text => Cell::Text(String::new()),
            },
            left: self.limit.unwrap_or(usize::MAX),
            part,
        };
        let pages = futures_util::stream::unfold(start, |mut st| async move {
            let p = Arc::clone(&st.part);
            if st.left == 0 || p.time.0 >= p.time.1 {
                return None;
            }
            let want = i64::try_from(st.left).unwrap_or(p.page).min(p.page);
            let rows = match p
                .store
                .scan_page(&p.sql, &st.after, p.time, want, &p.reads)
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    st.left = 0;
                    return Some((Err(DataFusionError::External(Box::new(e))), st));
                }
            };
            let last = rows.last().and_then(|r| r.first()).cloned()?;
            st.left = if (rows.len() as i64) < want {
                0
            } else {
                st.left.saturating_sub(rows.len())
            };
            st.after = last;
            Some((p.spec.batch(&p.schema, &p.columns, &rows), st))
        });
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            pages,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::{col, lit};

    fn ts(us: i64) -> Expr {
        lit(ScalarValue::TimestampMicrosecond(
            Some(us),
            Some("UTC".into()),
        ))
    }

    #[test]
    fn filters_narrow_the_ranges_the_store_reads() {
        let r = Ranges::of(&[
            col("idx").gt_eq(lit(10_i64)),
            lit(20_i64).gt(col("idx")),
            col("at").gt(ts(1_000)),
            col("at").lt_eq(ts(5_000)),
            // Not usable: left to DataFusion.
            col("action").eq(lit("service.query")),
        ]);
        assert_eq!(r.idx, (10, 20));
        assert_eq!(r.at, (1_001, 5_001));
        assert!(!r.is_empty());
        let r = Ranges::of(&[col("idx").eq(lit(7_i64))]);
        assert_eq!(r.idx, (7, 8));
        assert!(Ranges::of(&[col("idx").gt(lit(5_i64)), col("idx").lt(lit(3_i64))]).is_empty());
        // Nanosecond literals round down; the range keeps the boundary row.
        let ns = lit(ScalarValue::TimestampNanosecond(Some(2_500), None));
        assert_eq!(Ranges::of(&[col("at").gt_eq(ns.clone())]).at.0, 2);
        assert_eq!(
            Ranges::of(&[col("at").lt(ns)]).at.1,
            3,
            "keeps the row at 2 µs"
        );
        assert_eq!(
            Ranges::default(),
            Ranges::of(&[col("outcome").eq(lit("ok"))])
        );
    }

    #[test]
    fn a_scan_splits_into_contiguous_index_ranges() {
        let all = Ranges {
            idx: (10, i64::MAX),
            at: (5, 50),
        };
        // 100 entries from 10 on, pages of 10: three partitions of 33, 33 and the rest.
        let parts = split(all, 110, 10, 3, None);
        assert_eq!(
            parts.iter().map(|r| r.idx).collect::<Vec<_>>(),
            [(10, 43), (43, 76), (76, i64::MAX)],
            "the last keeps the scan's open end"
        );
        assert!(parts.iter().all(|r| r.at == (5, 50)));
        // Fewer than two pages a partition: as many as get two (here two).
        assert_eq!(split(all, 50, 10, 8, None).len(), 2);
        assert_eq!(split(all, 20, 10, 8, None), [all]);
        // A LIMIT, an empty range or one partition: the scan stays whole.
        assert_eq!(split(all, 110, 10, 3, Some(5)), [all]);
        assert_eq!(split(all, 110, 10, 1, None), [all]);
        assert_eq!(split(all, 5, 10, 3, None), [all]);
        let empty = Ranges {
            idx: (60, 40),
            at: (5, 50),
        };
        assert_eq!(split(empty, 110, 10, 3, None), [empty]);
    }

    #[test]
    fn the_schema_lists_every_column_once() {
        let s = audit_schema();
        assert_eq!(s.fields().len(), AUDIT_COLUMNS.len());
        let mut names: Vec<&str> = AUDIT_COLUMNS.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), AUDIT_COLUMNS.len());
    }
}
