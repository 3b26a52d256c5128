//! The demo world's department data: a population register (人口库) of synthetic people
//! in Foshan (佛山), whose ID numbers carry valid GB 11643 check digits.
//!
//! Generation is deterministic for a seed, written to a temporary file and renamed into
//! place, so a crash never leaves a half-built database.

use std::io::IsTerminal;
use std::path::Path;
use std::str::FromStr;

use chrono::NaiveDate;
use indicatif::{ProgressBar, ProgressStyle};
use paotui_policies::ids::IdNumber;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

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

const SCHEMA: &str = "CREATE TABLE person (
    id_number      TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    gender         TEXT NOT NULL,
    birth_date     TEXT NOT NULL,
    ethnicity      TEXT NOT NULL,
    household_type TEXT NOT NULL,
    address        TEXT NOT NULL,
    phone          TEXT NOT NULL,
    marital_status TEXT NOT NULL
)";

/// Writes a population database of `n` distinct people to `path` and returns the first
/// few of them. A progress bar is drawn when `progress` is set and stderr is a terminal.
pub async fn write_population(
    path: &Path,
    n: usize,
    seed: u64,
    progress: bool,
) -> Result<Vec<Person>> {
    let io = |e: sqlx::Error| Error::Generate(format!("{}: {e}", path.display()));
    let tmp = path.with_extension("db.tmp");
    let _ = std::fs::remove_file(&tmp);
    let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", tmp.display()))
        .map_err(io)?
        .create_if_missing(true);
    let mut conn = SqliteConnection::connect_with(&opts).await.map_err(io)?;
    sqlx::query(SCHEMA).execute(&mut conn).await.map_err(io)?;
    let bar = if progress && std::io::stderr().is_terminal() {
        let b = ProgressBar::new(n as u64);
        if let Ok(style) = ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} people") {
            b.set_style(style);
        }
        b.set_message("population register");
        b
    } else {
        ProgressBar::hidden()
    };
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut samples = Vec::new();
    let mut written = 0usize;
    let mut tx = conn.begin().await.map_err(io)?;
    while written < n {
        let p = person(&mut rng)?;
        let res = sqlx::query("INSERT OR IGNORE INTO person VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
            .bind(p.id_number.as_str())
            .bind(&p.name)
            .bind(p.gender)
            .bind(p.birth_date.format("%Y-%m-%d").to_string())
            .bind(p.ethnicity)
            .bind(p.household_type)
            .bind(&p.address)
            .bind(&p.phone)
            .bind(p.marital_status)
            .execute(&mut *tx)
            .await
            .map_err(io)?;
        if res.rows_affected() == 1 {
            written += 1;
            bar.inc(1);
            if samples.len() < 5 {
                samples.push(p);
            }
        }
    }
    tx.commit().await.map_err(io)?;
    conn.close().await.map_err(io)?;
    bar.finish_and_clear();
    std::fs::rename(&tmp, path).map_err(|e| Error::Generate(format!("{}: {e}", path.display())))?;
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

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
