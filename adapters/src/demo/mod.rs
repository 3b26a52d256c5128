//! The demo world's department data, drawn from the seeds: synthetic people of Foshan
//! (佛山) and what four departments hold about them.
//!
//! - 公安 population register (`person`): name, ID number (valid GB 11643 check digit),
//!   household address, birth date …
//! - 不动产 property registry (`property`): parcel unit number, certificate, owner ID, area,
//!   encumbrances (mortgage / seizure) …
//! - 市场监管 business registry (`business`): USCC (valid GB 32100 and GB 11714 check
//!   characters), legal representative ID, scope, status …
//! - 人社 social insurance (`social_insurance`): insured ID, insurance type, status,
//!   months paid …
//! - the issuing departments' existing licenses, as import files for the vault
//!   (`licenses-{GA,SC,BDC}.csv`, see [`licenses`]).
//!
//! Generation is deterministic for a seed. SQLite and export files are written under a
//! temporary name and renamed into place; PostgreSQL and MySQL tables are loaded as
//! `<table>__new` and swapped in at the end, so a crash never leaves a half-built world.

use std::io::IsTerminal;
use std::path::PathBuf;

use chrono::NaiveDate;
use indicatif::{ProgressBar, ProgressStyle};
use paotui_policies::ids::{IdNumber, Uscc, uscc_check_char};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::batch::Cell;
use crate::{Error, Result};

/// Foshan's districts with their GB/T 2260 codes (seed 000: 三水区 "一门办理、全城通办").
const DISTRICTS: [(u32, &str, &[&str]); 5] = [
    (
        440604,
        "禅城区",
        &["祖庙街道", "石湾镇街道", "张槎街道", "南庄镇"],
    ),
    (
        440605,
        "南海区",
        &[
            "桂城街道",
            "九江镇",
            "西樵镇",
            "丹灶镇",
            "狮山镇",
            "大沥镇",
            "里水镇",
        ],
    ),
    (
        440606,
        "顺德区",
        &[
            "大良街道",
            "容桂街道",
            "伦教街道",
            "勒流街道",
            "陈村镇",
            "北滘镇",
            "乐从镇",
        ],
    ),
    (
        440607,
        "三水区",
        &[
            "西南街道",
            "云东海街道",
            "白坭镇",
            "乐平镇",
            "大塘镇",
            "芦苞镇",
            "南山镇",
        ],
    ),
    (
        440608,
        "高明区",
        &["荷城街道", "杨和镇", "明城镇", "更合镇"],
    ),
];

const SURNAMES: &str = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高梁郑谢宋唐许韩冯邓曹彭曾肖田董潘袁蔡蒋余于杜叶程魏苏吕丁任卢姚沈钟姜崔谭陆范汪廖石金韦贾夏付方邹熊白孟秦邱侯江尹薛段雷龙黎史陶贺毛郝顾龚邵万覃武钱戴严欧莫孔向常汤康易乔赖文施洪";
const GIVEN: &str = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红鹏辉建文波宁斌宇浩凯健俊帆帅旭婷雪琳晶欣怡佳子梓涵轩睿博嘉思雨晨志永海国荣成家德金春燕";
const ROADS: [&str; 10] = [
    "健力宝南路",
    "广海大道",
    "张边路",
    "三达路",
    "新城路",
    "环城路",
    "人民路",
    "中山路",
    "文锋路",
    "云东海大道",
];
const ETHNICITIES: [(&str, u32); 5] = [
    ("汉族", 94),
    ("壮族", 2),
    ("瑶族", 1),
    ("回族", 1),
    ("土家族", 2),
];

/// One generated person (the demo prints a few of them for its walk-through).
#[derive(Debug, Clone)]
pub struct Person {
    pub id_number: IdNumber,
    pub name: String,
    pub gender: &'static str,
    pub birth_date: NaiveDate,
    pub ethnicity: &'static str,
    pub household_type: &'static str,
    pub address: String,
    pub phone: String,
    pub marital_status: &'static str,
}

fn pick<T: Copy>(rng: &mut SmallRng, xs: &[T]) -> T {
    xs[rng.gen_range(0..xs.len())]
}

fn weighted(rng: &mut SmallRng, xs: &[(&'static str, u32)]) -> &'static str {
    let total: u32 = xs.iter().map(|x| x.1).sum();
    let mut r = rng.gen_range(0..total);
    for (v, w) in xs {
        if r < *w {
            return v;
        }
        r -= w;
    }
    xs[0].0
}

/// Generates one person; deterministic given the RNG state.
pub fn person(rng: &mut SmallRng) -> Result<Person> {
    let surnames: Vec<char> = SURNAMES.chars().collect();
    let given: Vec<char> = GIVEN.chars().collect();
    let (region, district, streets) = pick(rng, &DISTRICTS);
    let birth = NaiveDate::from_ymd_opt(1940, 1, 1).unwrap_or_default()
        + chrono::Duration::days(rng.gen_range(0..(365 * 80)));
    let seq: u16 = rng.gen_range(0..1000);
    let id_number =
        IdNumber::from_parts(region, birth, seq).map_err(|e| Error::Generate(e.to_string()))?;
    let gender = if seq % 2 == 1 { "男" } else { "女" };
    let mut name = String::new();
    name.push(pick(rng, &surnames));
    for _ in 0..rng.gen_range(1..=2) {
        name.push(pick(rng, &given));
    }
    let address = format!(
        "广东省佛山市{district}{}{}{}号",
        pick(rng, streets),
        pick(rng, &ROADS),
        rng.gen_range(1..300)
    );
    let phone = format!(
        "1{}{:09}",
        pick(rng, &[3u8, 5, 7, 8, 9]),
        rng.gen_range(0..1_000_000_000u32)
    );
    let age = 2026 - chrono::Datelike::year(&birth);
    let marital_status = if age < 22 {
        "未婚"
    } else {
        weighted(rng, &[("已婚", 70), ("未婚", 20), ("离婚", 6), ("丧偶", 4)])
    };
    Ok(Person {
        id_number,
        name,
        gender,
        birth_date: birth,
        ethnicity: weighted(rng, &ETHNICITIES),
        household_type: weighted(rng, &[("城镇", 70), ("农村", 30)]),
        address,
        phone,
        marital_status,
    })
}

pub mod licenses;
mod sink;

pub use sink::{Sink, Table, Ty};

/// 公安 population register.
pub const PERSON: Table = Table {
    name: "person",
    columns: &[
        ("id_number", Ty::Text),
        ("name", Ty::Text),
        ("gender", Ty::Text),
        ("birth_date", Ty::Date),
        ("ethnicity", Ty::Text),
        ("household_type", Ty::Text),
        ("address", Ty::Text),
        ("phone", Ty::Text),
        ("marital_status", Ty::Text),
    ],
    primary_key: &["id_number"],
    indexes: &[],
};

/// 不动产 property registry: one row per registered unit.
pub const PROPERTY: Table = Table {
    name: "property",
    columns: &[
        ("unit_number", Ty::Text),
        ("certificate_no", Ty::Text),
        ("owner_id", Ty::Text),
        ("owner_name", Ty::Text),
        ("address", Ty::Text),
        ("usage", Ty::Text),
        ("area", Ty::Dec(12, 2)),
        ("floor_count", Ty::Int),
        ("registered_at", Ty::Ts),
        ("mortgaged", Ty::Bool),
        ("encumbrance", Ty::Text),
    ],
    primary_key: &["unit_number"],
    indexes: &["owner_id"],
};

/// 市场监管 business registry: one row per market entity.
pub const BUSINESS: Table = Table {
    name: "business",
    columns: &[
        ("uscc", Ty::Text),
        ("name", Ty::Text),
        ("entity_type", Ty::Text),
        ("legal_rep_id", Ty::Text),
        ("legal_rep_name", Ty::Text),
        ("registered_capital", Ty::Dec(16, 2)),
        ("established", Ty::Date),
        ("status", Ty::Text),
        ("scope", Ty::Text),
        ("address", Ty::Text),
        ("annual_report_filed", Ty::Bool),
    ],
    primary_key: &["uscc"],
    indexes: &["legal_rep_id"],
};

/// 人社 social insurance: one row per person and insurance type.
pub const SOCIAL: Table = Table {
    name: "social_insurance",
    columns: &[
        ("insured_id", Ty::Text),
        ("name", Ty::Text),
        ("insurance_type", Ty::Text),
        ("status", Ty::Text),
        ("months", Ty::Int),
        ("contribution_base", Ty::Dec(10, 2)),
        ("first_paid", Ty::Date),
        ("last_paid", Ty::Date),
        ("employer_uscc", Ty::Text),
        ("updated_at", Ty::Ts),
    ],
    primary_key: &["insured_id", "insurance_type"],
    indexes: &["insured_id"],
};

/// Where `paotui demo-data` writes: SQLite files and exports under `dir`, and optionally
/// the property registry in PostgreSQL and the business registry in MySQL / MariaDB.
#[derive(Debug, Clone)]
pub struct Options {
    pub dir: PathBuf,
    pub people: usize,
    pub seed: u64,
    pub postgres: Option<String>,
    pub mysql: Option<String>,
    pub progress: bool,
}

/// Subjects known to be present in each department's data (for walk-throughs and tests).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Samples {
    pub population: Vec<String>,
    pub property: Vec<String>,
    pub business: Vec<String>,
    pub social: Vec<String>,
}

/// What was written.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    pub samples: Samples,
    /// Rows per table.
    pub rows: Vec<(String, u64)>,
}

const SAMPLES: usize = 5;

/// The column types of the CSV export, as a config declares them (`[sources.x.columns]`).
pub const SOCIAL_CSV_COLUMNS: [(&str, &str); 10] = [
    ("insured_id", "text"),
    ("name", "text"),
    ("insurance_type", "text"),
    ("status", "text"),
    ("months", "integer"),
    ("contribution_base", "decimal(2)"),
    ("first_paid", "date"),
    ("last_paid", "date"),
    ("employer_uscc", "text"),
    ("updated_at", "timestamp"),
];

/// The file names under the data dir.
pub const POPULATION_DB: &str = "population.db";
pub const PROPERTY_DB: &str = "property.db";
pub const BUSINESS_DB: &str = "business.db";

fn progress_bar(n: usize, on: bool) -> ProgressBar {
    if !(on && std::io::stderr().is_terminal()) {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(n as u64);
    if let Ok(style) = ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} people ({eta})") {
        b.set_style(style);
    }
    b.set_message("department data");
    b
}

/// Generates the four departments' data for `opts.people` distinct people.
pub async fn generate(opts: &Options) -> Result<Summary> {
    std::fs::create_dir_all(&opts.dir)
        .map_err(|e| Error::Generate(format!("{}: {e}", opts.dir.display())))?;
    let mut person_sink = Sink::sqlite(&PERSON, &opts.dir.join(POPULATION_DB)).await?;
    let mut property_sink = match &opts.postgres {
        Some(url) => Sink::postgres(&PROPERTY, url).await?,
        None => Sink::sqlite(&PROPERTY, &opts.dir.join(PROPERTY_DB)).await?,
    };
    let mut business_sink = match &opts.mysql {
        Some(url) => Sink::mysql(&BUSINESS, url).await?,
        None => Sink::sqlite(&BUSINESS, &opts.dir.join(BUSINESS_DB)).await?,
    };
    let mut social_sink = Sink::files(&SOCIAL, &opts.dir)?;
    let mut license_files = licenses::LicenseFiles::create(&opts.dir)?;

    let bar = progress_bar(opts.people, opts.progress);
    let mut rng = SmallRng::seed_from_u64(opts.seed);
    let mut seen = std::collections::HashSet::with_capacity(opts.people);
    let mut samples = Samples::default();
    let mut serial = Serials::default();
    let mut employers: Vec<String> = Vec::new();
    while seen.len() < opts.people {
        let p = person(&mut rng)?;
        if !seen.insert(p.id_number.as_str().to_owned()) {
            continue;
        }
        bar.inc(1);
        let id = p.id_number.as_str().to_owned();
        person_sink.push(person_row(&p)).await?;
        license_files.person(&p)?;
        keep(&mut samples.population, &id);
        let age = 2026 - chrono::Datelike::year(&p.birth_date);
        if age >= 22 && rng.gen_bool(0.45) {
            for _ in 0..rng.gen_range(1..=2) {
                let row = property_row(&mut rng, &mut serial, &p);
                license_files.property(&row)?;
                property_sink.push(row).await?;
            }
            keep(&mut samples.property, &id);
        }
        if age >= 20 && rng.gen_bool(0.12) {
            let row = business_row(&mut rng, &mut serial, &p)?;
            license_files.business(&row)?;
            if let Cell::Text(uscc) = &row[0] {
                keep(&mut samples.business, uscc);
                if employers.len() < 1000 {
                    employers.push(uscc.clone());
                }
            }
            business_sink.push(row).await?;
        }
        if (16..=70).contains(&age) && rng.gen_bool(0.75) {
            for row in social_rows(&mut rng, &p, &employers) {
                social_sink.push(row).await?;
            }
            keep(&mut samples.social, &id);
        }
    }
    let mut rows = Vec::new();
    for (t, s) in [
        (PERSON.name, person_sink),
        (PROPERTY.name, property_sink),
        (BUSINESS.name, business_sink),
        (SOCIAL.name, social_sink),
    ] {
        rows.push((t.to_owned(), s.finish().await?));
    }
    license_files.finish()?;
    bar.finish_and_clear();
    Ok(Summary { samples, rows })
}

fn keep(v: &mut Vec<String>, s: &str) {
    if v.len() < SAMPLES {
        v.push(s.to_owned());
    }
}

#[derive(Default)]
struct Serials {
    unit: u64,
    certificate: u64,
    business: u64,
}

fn text(s: impl Into<String>) -> Cell {
    Cell::Text(s.into())
}

fn date(d: NaiveDate) -> Cell {
    Cell::Date(d)
}

fn day_after(rng: &mut SmallRng, from: NaiveDate, max_days: i64) -> NaiveDate {
    let today = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap_or(from);
    let span = (today - from).num_days().clamp(1, max_days.max(1));
    from + chrono::Duration::days(rng.gen_range(0..span))
}

fn timestamp(rng: &mut SmallRng, d: NaiveDate) -> Cell {
    let secs = rng.gen_range(8 * 3600..18 * 3600);
    Cell::Timestamp(
        d.and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc()
            .timestamp_micros()
            + secs * 1_000_000,
    )
}

/// A person as a row of [`PERSON`].
pub fn person_row(p: &Person) -> Vec<Cell> {
    vec![
        text(p.id_number.as_str()),
        text(&p.name),
        text(p.gender),
        date(p.birth_date),
        text(p.ethnicity),
        text(p.household_type),
        text(&p.address),
        text(&p.phone),
        text(p.marital_status),
    ]
}

const BANKS: [&str; 5] = [
    "中国工商银行佛山分行",
    "中国建设银行佛山分行",
    "佛山农村商业银行",
    "中国农业银行佛山分行",
    "招商银行佛山分行",
];

fn property_row(rng: &mut SmallRng, s: &mut Serials, p: &Person) -> Vec<Cell> {
    let (region, district, streets) = pick(rng, &DISTRICTS);
    s.unit += 1;
    s.certificate += 1;
    // 不动产单元号 (GB/T 37346 style): region, cadastral zone and subzone, parcel, building unit.
    let unit = format!(
        "{region}{:03}{:03}GB{:05}F{:08}",
        rng.gen_range(1..20),
        rng.gen_range(1..30),
        s.unit % 100_000,
        s.unit
    );
    let registered = day_after(
        rng,
        NaiveDate::from_ymd_opt(2015, 3, 1).unwrap_or_default(),
        365 * 12,
    );
    let year = chrono::Datelike::year(&registered);
    let usage = weighted(rng, &[("住宅", 80), ("商业", 12), ("工业", 5), ("办公", 3)]);
    let area = rust_decimal::Decimal::new(rng.gen_range(3_000..25_000), 2);
    let mortgaged = rng.gen_bool(0.35);
    let encumbrance = if mortgaged {
        text(format!(
            "抵押:{} {}",
            pick(rng, &BANKS),
            registered.format("%Y-%m-%d")
        ))
    } else if rng.gen_bool(0.02) {
        text("查封:佛山市中级人民法院")
    } else {
        Cell::Null
    };
    vec![
        text(unit),
        text(format!("粤({year})佛山市不动产权第{:07}号", s.certificate)),
        text(p.id_number.as_str()),
        text(&p.name),
        text(format!(
            "广东省佛山市{district}{}{}{}号{}栋{}房",
            pick(rng, streets),
            pick(rng, &ROADS),
            rng.gen_range(1..300),
            rng.gen_range(1..30),
            rng.gen_range(101..3300)
        )),
        text(usage),
        Cell::Decimal(area),
        Cell::Int(rng.gen_range(1..34)),
        timestamp(rng, registered),
        Cell::Bool(mortgaged),
        encumbrance,
    ]
}

/// GB 11714 organization code check character for 8 body characters.
fn org_check(body: &[u8; 8]) -> char {
    const W: [u32; 8] = [3, 7, 9, 10, 5, 8, 4, 2];
    let v = |c: u8| {
        if c.is_ascii_digit() {
            u32::from(c - b'0')
        } else {
            u32::from(c - b'A') + 10
        }
    };
    let sum: u32 = body.iter().zip(W).map(|(c, w)| v(*c) * w).sum();
    match 11 - sum % 11 {
        10 => 'X',
        11 => '0',
        n => char::from_digit(n, 10).unwrap_or('0'),
    }
}

/// A unified social credit code: 9 (市场监管) + entity kind + region + organization code +
/// GB 32100 check character.
pub fn uscc(kind: char, region: u32, serial: u64) -> Result<Uscc> {
    let body = format!("{:08}", serial % 100_000_000);
    let mut b = [0u8; 8];
    b.copy_from_slice(body.as_bytes());
    let first17 = format!("9{kind}{region:06}{body}{}", org_check(&b));
    let check = uscc_check_char(first17.as_bytes())
        .ok_or_else(|| Error::Generate(format!("no USCC check character for {first17}")))?;
    Uscc::parse(&format!("{first17}{check}")).map_err(|e| Error::Generate(e.to_string()))
}

const TRADES: [(&str, &str); 6] = [
    ("五金制品", "五金产品制造、销售;金属制品加工"),
    ("家具", "家具制造、销售;木制品加工"),
    ("陶瓷", "建筑陶瓷制品制造、销售"),
    ("餐饮", "餐饮服务;食品销售"),
    ("电器", "家用电器制造、销售、维修"),
    ("商贸", "日用百货、服装鞋帽批发零售"),
];

fn business_row(rng: &mut SmallRng, s: &mut Serials, p: &Person) -> Result<Vec<Cell>> {
    let (region, district, streets) = pick(rng, &DISTRICTS);
    s.business += 1;
    let sole = rng.gen_bool(0.4);
    let code = uscc(
        if sole { '2' } else { '1' },
        region,
        10_000_000 + s.business * 7,
    )?;
    let (trade, scope) = pick(rng, &TRADES);
    let place = pick(rng, streets)
        .trim_end_matches(['镇', '街', '道'])
        .to_owned();
    let (name, kind, capital) = if sole {
        (
            format!("佛山市{district}{place}{}{trade}店", p.name),
            "个体工商户",
            Cell::Null,
        )
    } else {
        let cap = rust_decimal::Decimal::new(rng.gen_range(10..5000) * 1_000_000, 2);
        (
            format!(
                "佛山市{place}{}{trade}有限公司",
                pick(rng, &["华", "宏", "盛", "达", "兴", "利"])
            ),
            "有限责任公司",
            Cell::Decimal(cap),
        )
    };
    let established = day_after(
        rng,
        NaiveDate::from_ymd_opt(1995, 1, 1).unwrap_or_default(),
        365 * 31,
    );
    let status = weighted(rng, &[("存续", 85), ("注销", 10), ("吊销", 5)]);
    Ok(vec![
        text(code.as_str()),
        text(name),
        text(kind),
        text(p.id_number.as_str()),
        text(&p.name),
        capital,
        date(established),
        text(status),
        text(scope),
        text(format!(
            "广东省佛山市{district}{}{}号",
            pick(rng, &ROADS),
            rng.gen_range(1..500)
        )),
        Cell::Bool(status == "存续" && rng.gen_bool(0.9)),
    ])
}

const INSURANCES: [&str; 4] = [
    "职工基本养老保险",
    "失业保险",
    "工伤保险",
    "职工基本医疗保险",
];

fn social_rows(rng: &mut SmallRng, p: &Person, employers: &[String]) -> Vec<Vec<Cell>> {
    let adult = p.birth_date + chrono::Duration::days(365 * 18);
    let first = day_after(
        rng,
        adult.max(NaiveDate::from_ymd_opt(1995, 1, 1).unwrap_or(adult)),
        365 * 30,
    );
    let employer = if employers.is_empty() || rng.gen_bool(0.2) {
        Cell::Null
    } else {
        text(employers[rng.gen_range(0..employers.len())].clone())
    };
    let status = weighted(rng, &[("正常参保", 80), ("暂停缴费", 15), ("终止参保", 5)]);
    let months_possible =
        ((NaiveDate::from_ymd_opt(2026, 11, 1).unwrap_or(first) - first).num_days() / 30).max(1);
    let n = rng.gen_range(1..=INSURANCES.len());
    let base = rust_decimal::Decimal::new(rng.gen_range(230_000..3_000_000), 2);
    INSURANCES[..n]
        .iter()
        .map(|kind| {
            let months = rng.gen_range(1..=months_possible);
            let last = if status == "正常参保" {
                date(NaiveDate::from_ymd_opt(2026, 10, 1).unwrap_or(first))
            } else if rng.gen_bool(0.5) {
                date(day_after(rng, first, 365 * 30))
            } else {
                Cell::Null
            };
            vec![
                text(p.id_number.as_str()),
                text(&p.name),
                text(*kind),
                text(status),
                Cell::Int(months),
                Cell::Decimal(base),
                date(first),
                last,
                employer.clone(),
                timestamp(rng, NaiveDate::from_ymd_opt(2026, 10, 31).unwrap_or(first)),
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DataSource, FileSource, SourceLimits, SqliteSource};
    use datafusion::arrow::array::AsArray;
    use paotui_policies::catalog::ParamValue;

    #[test]
    fn uscc_and_org_code_known_answers() {
        // The published example 91350100M000100Y43: organization code M000100Y, check 4.
        assert_eq!(org_check(b"M000100Y"), '4');
        let u = uscc('1', 440604, 12345).unwrap();
        assert!(Uscc::parse(u.as_str()).is_ok());
        assert!(u.as_str().starts_with("91440604"));
    }

    #[tokio::test]
    async fn generates_four_departments_deterministically() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let opts = |dir: &std::path::Path| Options {
            dir: dir.to_owned(),
            people: 300,
            seed: 42,
            postgres: None,
            mysql: None,
            progress: false,
        };
        let sa = generate(&opts(a.path())).await.unwrap();
        let sb = generate(&opts(b.path())).await.unwrap();
        assert_eq!(sa.samples, sb.samples, "same seed, same world");
        assert_eq!(sa.rows, sb.rows);
        assert_eq!(sa.rows[0], ("person".into(), 300));
        for (t, n) in &sa.rows {
            assert!(*n > 10, "{t} has {n} rows");
        }
        for f in [
            "population.db",
            "property.db",
            "business.db",
            "social_insurance.parquet",
            "social_insurance.csv",
        ] {
            assert!(a.path().join(f).is_file(), "{f}");
        }
        assert!(
            !std::fs::read_dir(a.path()).unwrap().any(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".tmp"))
        );
        for id in sa
            .samples
            .population
            .iter()
            .chain(&sa.samples.property)
            .chain(&sa.samples.social)
        {
            IdNumber::parse(id).unwrap();
        }
        for u in &sa.samples.business {
            Uscc::parse(u).unwrap();
        }
        // Each department answers for its sample subject.
        let lim = SourceLimits::default();
        let prop = SqliteSource::open("property", &a.path().join("property.db"), lim)
            .await
            .unwrap();
        let owner = &sa.samples.property[0];
        let r = prop
            .query("SELECT owner_id, area, mortgaged, registered_at FROM property WHERE owner_id = :subject", &[ParamValue::Text(owner.clone())])
            .await
            .unwrap();
        assert!(r.batch.num_rows() >= 1);
        assert_eq!(r.batch.column(0).as_string::<i32>().value(0), owner);
        let types: Vec<_> = r
            .batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        use datafusion::arrow::datatypes::{DataType, TimeUnit};
        // SQLite has no decimal type: DECIMAL columns hold REAL values and read as Float64.
        assert_eq!(
            types,
            [
                DataType::Utf8,
                DataType::Float64,
                DataType::Boolean,
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
            ]
        );
        let biz = SqliteSource::open("business", &a.path().join("business.db"), lim)
            .await
            .unwrap();
        let r = biz
            .query(
                "SELECT uscc, status FROM business WHERE uscc = :subject",
                &[ParamValue::Text(sa.samples.business[0].clone())],
            )
            .await
            .unwrap();
        assert_eq!(r.batch.num_rows(), 1);
        let pq = FileSource::parquet(
            "social",
            &a.path().join("social_insurance.parquet"),
            "social_insurance",
            lim,
        )
        .await
        .unwrap();
        let sql = "SELECT insured_id, months, contribution_base, first_paid FROM social_insurance WHERE insured_id = :subject";
        let subject = [ParamValue::Text(sa.samples.social[0].clone())];
        let from_parquet = pq.query(sql, &subject).await.unwrap();
        assert!(from_parquet.batch.num_rows() >= 1);
        let cols = SOCIAL_CSV_COLUMNS
            .iter()
            .map(|(c, t)| ((*c).to_owned(), crate::ColumnType::parse(t).unwrap()))
            .collect();
        let csv = FileSource::csv(
            "social",
            &a.path().join("social_insurance.csv"),
            "social_insurance",
            &cols,
            lim,
        )
        .await
        .unwrap();
        let from_csv = csv.query(sql, &subject).await.unwrap();
        assert_eq!(
            from_parquet.batch, from_csv.batch,
            "the two exports say the same"
        );
    }

    #[test]
    fn people_are_valid_and_deterministic() {
        let mut a = SmallRng::seed_from_u64(1);
        let mut b = SmallRng::seed_from_u64(1);
        for _ in 0..200 {
            let p = person(&mut a).unwrap();
            let q = person(&mut b).unwrap();
            assert_eq!(p.id_number, q.id_number);
            assert!(IdNumber::parse(p.id_number.as_str()).is_ok());
            assert!(p.name.chars().count() >= 2);
            // Odd sequence digit = male, per GB 11643.
            let seq = p.id_number.as_str().as_bytes()[16] - b'0';
            assert_eq!(p.gender == "男", seq % 2 == 1);
        }
    }
}
