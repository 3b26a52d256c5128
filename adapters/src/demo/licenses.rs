//! The issuing departments' existing licenses, as import files for the license vault
//! (`paotui license import`): `licenses-GA.csv` (居民户口簿 for a share of people),
//! `licenses-BDC.csv` (不动产权证书 for a share of property rows), `licenses-SC.csv`
//! (营业执照 for every business still registered, 食品经营许可证 for food businesses).
//!
//! Rows follow from the department data already generated and draw nothing from the
//! generator's random stream, so adding them leaves the rest of the world unchanged.

use std::path::Path;

use chrono::NaiveDate;

use super::Person;
use crate::batch::Cell;
use crate::{Error, Result};

/// The header of every license file: the request columns, then the union of the demo
/// types' data fields (a type's row leaves the others' cells empty).
pub const HEADER: [&str; 17] = [
    "type",
    "holder_id",
    "holder_name",
    "number",
    "issued_on",
    "valid_from",
    "valid_until",
    "household_type",
    "address",
    "legal_rep",
    "entity_kind",
    "registered_capital",
    "scope",
    "established",
    "unit",
    "usage",
    "area",
];

/// Every how-many-th person has a household register on file, and every how-many-th
/// property certificate.
const PERSON_SHARE: u64 = 5;
const PROPERTY_SHARE: u64 = 4;

pub(super) struct LicenseFiles {
    ga: csv::Writer<std::fs::File>,
    sc: csv::Writer<std::fs::File>,
    bdc: csv::Writer<std::fs::File>,
    people: u64,
    properties: u64,
}

fn writer(dir: &Path, dept: &str) -> Result<csv::Writer<std::fs::File>> {
    let path = dir.join(format!("licenses-{dept}.csv"));
    let mut w = csv::Writer::from_path(&path)
        .map_err(|e| Error::Generate(format!("{}: {e}", path.display())))?;
    w.write_record(HEADER)
        .map_err(|e| Error::Generate(format!("{}: {e}", path.display())))?;
    Ok(w)
}

fn cell(c: Option<&Cell>) -> String {
    match c {
        Some(Cell::Text(s)) => s.clone(),
        Some(Cell::Decimal(d)) => d.to_string(),
        Some(Cell::Int(i)) => i.to_string(),
        Some(Cell::Date(d)) => d.to_string(),
        Some(Cell::Timestamp(us)) => chrono::DateTime::from_timestamp_micros(*us)
            .map(|t| t.date_naive().to_string())
            .unwrap_or_default(),
        _ => String::new(),
    }
}

fn put(w: &mut csv::Writer<std::fs::File>, values: &[(&str, String)]) -> Result<()> {
    let row: Vec<&str> = HEADER
        .iter()
        .map(|h| {
            values
                .iter()
                .find(|(k, _)| k == h)
                .map_or("", |(_, v)| v.as_str())
        })
        .collect();
    w.write_record(row)
        .map_err(|e| Error::Generate(format!("license file: {e}")))
}

impl LicenseFiles {
    pub(super) fn create(dir: &Path) -> Result<Self> {
        Ok(LicenseFiles {
            ga: writer(dir, "GA")?,
            sc: writer(dir, "SC")?,
            bdc: writer(dir, "BDC")?,
            people: 0,
            properties: 0,
        })
    }

    /// 居民户口簿 (GA) for every [`PERSON_SHARE`]-th person.
    pub(super) fn person(&mut self, p: &Person) -> Result<()> {
        self.people += 1;
        if !self.people.is_multiple_of(PERSON_SHARE) {
            return Ok(());
        }
        let issued = NaiveDate::from_ymd_opt(2016, 1, 1).unwrap_or_default()
            + chrono::Duration::days(i64::try_from(self.people % 3650).unwrap_or(0));
        put(
            &mut self.ga,
            &[
                ("type", "HKB".into()),
                ("holder_id", p.id_number.as_str().into()),
                ("holder_name", p.name.clone()),
                ("number", format!("4406{:09}", self.people)),
                ("issued_on", issued.to_string()),
                ("household_type", p.household_type.into()),
                ("address", p.address.clone()),
            ],
        )
    }

    /// 不动产权证书 (BDC) for every [`PROPERTY_SHARE`]-th property row.
    pub(super) fn property(&mut self, row: &[Cell]) -> Result<()> {
        self.properties += 1;
        if !self.properties.is_multiple_of(PROPERTY_SHARE) {
            return Ok(());
        }
        put(
            &mut self.bdc,
            &[
                ("type", "BDCQZ".into()),
                ("unit", cell(row.first())),
                ("number", cell(row.get(1))),
                ("holder_id", cell(row.get(2))),
                ("holder_name", cell(row.get(3))),
                ("address", cell(row.get(4))),
                ("usage", cell(row.get(5))),
                ("area", cell(row.get(6))),
                ("issued_on", cell(row.get(8))),
            ],
        )
    }

    /// 营业执照 (SC) for a business still registered (its number is the credit code), and
    /// a five-year 食品经营许可证 when it sells food (some of them have expired).
    pub(super) fn business(&mut self, row: &[Cell]) -> Result<()> {
        if cell(row.get(7)) == "注销" {
            return Ok(());
        }
        let uscc = cell(row.first());
        let name = cell(row.get(1));
        let established = cell(row.get(6));
        let scope = cell(row.get(8));
        put(
            &mut self.sc,
            &[
                ("type", "YYZZ".into()),
                ("holder_id", uscc.clone()),
                ("holder_name", name.clone()),
                ("number", uscc.clone()),
                ("issued_on", established.clone()),
                ("legal_rep", cell(row.get(4))),
                ("entity_kind", cell(row.get(2))),
                ("registered_capital", cell(row.get(5))),
                ("scope", scope.clone()),
                ("established", established.clone()),
                ("address", cell(row.get(9))),
            ],
        )?;
        if scope.contains("食品") || scope.contains("餐饮") {
            // Renewed in the issue year's anniversary cycle: valid five years from it.
            let from = NaiveDate::parse_from_str(&established, "%Y-%m-%d").unwrap_or_default();
            let renewed =
                from.with_year_clamped(2019 + i32::try_from(self.people % 7).unwrap_or(0));
            put(
                &mut self.sc,
                &[
                    ("type", "SPJY".into()),
                    ("holder_id", uscc.clone()),
                    ("holder_name", name),
                    (
                        "number",
                        format!("JY1{}", &uscc[uscc.len().saturating_sub(13)..]),
                    ),
                    ("issued_on", renewed.to_string()),
                    ("scope", "热食类食品制售".into()),
                    ("address", cell(row.get(9))),
                ],
            )?;
        }
        Ok(())
    }

    pub(super) fn finish(mut self) -> Result<()> {
        for w in [&mut self.ga, &mut self.sc, &mut self.bdc] {
            w.flush()
                .map_err(|e| Error::Generate(format!("license file: {e}")))?;
        }
        Ok(())
    }
}

trait ClampYear {
    fn with_year_clamped(self, y: i32) -> NaiveDate;
}

impl ClampYear for NaiveDate {
    /// The same day in year `y` (29 Feb → 28 Feb), never after 2026-11-01 (the world's today).
    fn with_year_clamped(self, y: i32) -> NaiveDate {
        use chrono::Datelike;
        let d = self
            .with_year(y)
            .or_else(|| NaiveDate::from_ymd_opt(y, self.month(), 28))
            .unwrap_or(self);
        d.min(NaiveDate::from_ymd_opt(2026, 11, 1).unwrap_or(d))
    }
}
