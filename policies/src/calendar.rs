//! Working days (工作日) for promised matters (承诺件): Monday–Friday, minus public holidays,
//! plus the weekend days the State Council moves work to (调休). Deadlines count working
//! days after the day a case is accepted, as 承诺办结时限 are counted.

use std::collections::BTreeSet;

use chrono::{Datelike, NaiveDate, Weekday};
use serde::Deserialize;

use crate::{Error, Result};

/// The holiday arrangement, as configured (`[calendar]` in the gateway config).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Calendar {
    holidays: BTreeSet<NaiveDate>,
    workdays: BTreeSet<NaiveDate>,
}

/// The config form: dates as `YYYY-MM-DD` strings.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarConfig {
    /// Weekdays off (法定节假日 and the days joined to them).
    #[serde(default)]
    pub holidays: Vec<String>,
    /// Weekend days worked instead (调休上班).
    #[serde(default)]
    pub workdays: Vec<String>,
}

/// Most working days a deadline may count (beyond this the arithmetic is not meaningful).
pub const MAX_WORKING_DAYS: u32 = 3650;

impl Calendar {
    /// Builds a calendar; a date listed as both holiday and workday, or a "workday" that is
    /// not a weekend day, is refused (either would be a typo in the arrangement).
    pub fn new(
        holidays: impl IntoIterator<Item = NaiveDate>,
        workdays: impl IntoIterator<Item = NaiveDate>,
    ) -> Result<Calendar> {
        let holidays: BTreeSet<NaiveDate> = holidays.into_iter().collect();
        let workdays: BTreeSet<NaiveDate> = workdays.into_iter().collect();
        if let Some(d) = holidays.intersection(&workdays).next() {
            return Err(Error::InvalidParam(format!(
                "calendar: {d} is listed both as a holiday and as a workday"
            )));
        }
        if let Some(d) = workdays.iter().find(|d| !is_weekend(**d)) {
            return Err(Error::InvalidParam(format!(
                "calendar: workday {d} is a {}, not a weekend day",
                d.weekday()
            )));
        }
        Ok(Calendar { holidays, workdays })
    }

    /// Parses the config form; errors name the list and the entry.
    pub fn from_config(c: &CalendarConfig) -> Result<Calendar> {
        let parse = |what: &str, list: &[String]| -> Result<Vec<NaiveDate>> {
            list.iter()
                .enumerate()
                .map(|(i, s)| {
                    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
                        Error::InvalidParam(format!(
                            "calendar: {what}[{i}] = {s:?} is not a date YYYY-MM-DD"
                        ))
                    })
                })
                .collect()
        };
        Calendar::new(
            parse("holidays", &c.holidays)?,
            parse("workdays", &c.workdays)?,
        )
    }

    pub fn is_working_day(&self, d: NaiveDate) -> bool {
        if self.workdays.contains(&d) {
            return true;
        }
        !is_weekend(d) && !self.holidays.contains(&d)
    }

    /// The `n`-th working day after `start` (`start` itself is not counted): the deadline
    /// of a matter promised in `n` working days and accepted on `start`. `n = 0` is `start`.
    pub fn add_working_days(&self, start: NaiveDate, n: u32) -> Result<NaiveDate> {
        if n > MAX_WORKING_DAYS {
            return Err(Error::InvalidParam(format!(
                "at most {MAX_WORKING_DAYS} working days"
            )));
        }
        let mut d = start;
        let mut left = n;
        while left > 0 {
            d = d
                .succ_opt()
                .ok_or_else(|| Error::InvalidParam("date out of range".into()))?;
            if self.is_working_day(d) {
                left -= 1;
            }
        }
        Ok(d)
    }

    /// Working days in `(from, to]`: how many working days a case took (0 the same day,
    /// negative when `to` is before `from`).
    pub fn working_days_between(&self, from: NaiveDate, to: NaiveDate) -> i64 {
        let (a, b, sign) = if to >= from {
            (from, to, 1)
        } else {
            (to, from, -1)
        };
        let n = a
            .iter_days()
            .skip(1)
            .take_while(|d| *d <= b)
            .filter(|d| self.is_working_day(*d))
            .count();
        sign * i64::try_from(n).unwrap_or(i64::MAX)
    }
}

fn is_weekend(d: NaiveDate) -> bool {
    matches!(d.weekday(), Weekday::Sat | Weekday::Sun)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    /// National Day as the State Council arranged it for 2025: 1–8 October off,
    /// Sunday 28 September and Saturday 11 October worked.
    fn national_day_2025() -> Calendar {
        Calendar::new(
            (1..=8).map(|i| d(&format!("2025-10-{i:02}"))),
            [d("2025-09-28"), d("2025-10-11")],
        )
        .unwrap()
    }

    #[test]
    fn weekends_are_skipped() {
        let c = Calendar::default();
        // Friday + 1 working day = Monday; + 5 = next Friday.
        assert_eq!(
            c.add_working_days(d("2026-11-20"), 1).unwrap(),
            d("2026-11-23")
        );
        assert_eq!(
            c.add_working_days(d("2026-11-20"), 5).unwrap(),
            d("2026-11-27")
        );
        // Accepted on a Saturday: the first working day is Monday.
        assert_eq!(
            c.add_working_days(d("2026-11-21"), 1).unwrap(),
            d("2026-11-23")
        );
        assert_eq!(
            c.add_working_days(d("2026-11-21"), 0).unwrap(),
            d("2026-11-21")
        );
        assert_eq!(c.working_days_between(d("2026-11-20"), d("2026-11-23")), 1);
        assert_eq!(c.working_days_between(d("2026-11-23"), d("2026-11-23")), 0);
        assert_eq!(c.working_days_between(d("2026-11-23"), d("2026-11-20")), -1);
    }

    #[test]
    fn holidays_are_skipped_and_makeup_weekend_days_count() {
        let c = national_day_2025();
        assert!(c.is_working_day(d("2025-09-28")), "Sunday worked (调休)");
        assert!(!c.is_working_day(d("2025-10-01")));
        assert!(!c.is_working_day(d("2025-10-08")), "a Wednesday off");
        assert!(c.is_working_day(d("2025-10-11")), "Saturday worked");
        // Accepted Friday 26 Sep, promised 3 working days: Sun 28, Mon 29, Tue 30.
        assert_eq!(
            c.add_working_days(d("2025-09-26"), 3).unwrap(),
            d("2025-09-30")
        );
        // Accepted Tue 30 Sep, promised 2: Thu 9 Oct, Fri 10 Oct.
        assert_eq!(
            c.add_working_days(d("2025-09-30"), 2).unwrap(),
            d("2025-10-10")
        );
        // …and 3: Saturday 11 Oct is worked.
        assert_eq!(
            c.add_working_days(d("2025-09-30"), 3).unwrap(),
            d("2025-10-11")
        );
        assert_eq!(c.working_days_between(d("2025-09-30"), d("2025-10-13")), 4);
    }

    #[test]
    fn contradictory_arrangements_are_refused() {
        let e = Calendar::new([d("2025-09-28")], [d("2025-09-28")]).unwrap_err();
        assert!(e.to_string().contains("both"), "{e}");
        let e = Calendar::new([], [d("2025-09-29")]).unwrap_err();
        assert!(e.to_string().contains("not a weekend day"), "{e}");
        let e = Calendar::from_config(&CalendarConfig {
            holidays: vec!["2025-10-01".into(), "2025-13-01".into()],
            workdays: vec![],
        })
        .unwrap_err();
        assert!(e.to_string().contains("holidays[1]"), "{e}");
        assert!(
            Calendar::default()
                .add_working_days(d("2025-01-01"), MAX_WORKING_DAYS + 1)
                .is_err()
        );
    }

    proptest! {
        /// The deadline is a working day, exactly `n` working days after the start, and
        /// counting back gives `n` again.
        #[test]
        fn deadline_and_count_agree(start in 0i64..4000, n in 0u32..60) {
            let c = national_day_2025();
            let s = d("2024-01-01") + chrono::Duration::days(start);
            let end = c.add_working_days(s, n).unwrap();
            prop_assert_eq!(c.working_days_between(s, end), i64::from(n));
            if n > 0 {
                prop_assert!(c.is_working_day(end));
            }
        }
    }
}
