//! Masking rules for personal fields (applied unless a policy grants the clear value).

use serde::{Deserialize, Serialize};

/// How a field is masked when the caller may not see it in clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mask {
    /// ID number: first 6 and last 4 kept (`110105********002X`).
    IdNumber,
    /// Name: first character kept (`张**`).
    Name,
    /// Phone: first 3 and last 4 kept (`138****5678`).
    Phone,
    /// Address: first 6 characters kept.
    Address,
    /// Date: year kept (`1949-**-**`).
    Date,
    /// Everything replaced by `*`.
    Full,
}

fn keep(s: &str, head: usize, tail: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    let n = chars.len();
    if n <= head + tail {
        return "*".repeat(n.max(1));
    }
    let mut out = String::with_capacity(s.len());
    out.extend(&chars[..head]);
    out.extend(std::iter::repeat_n('*', n - head - tail));
    out.extend(&chars[n - tail..]);
    out
}

pub fn id_number(s: &str) -> String {
    keep(s, 6, 4)
}

impl Mask {
    pub fn apply(self, s: &str) -> String {
        match self {
            Mask::IdNumber => id_number(s),
            Mask::Name => {
                let n = s.chars().count();
                if n <= 1 { "*".into() } else { keep(s, 1, 0) }
            }
            Mask::Phone => keep(s, 3, 4),
            Mask::Address => {
                let n = s.chars().count();
                if n <= 6 {
                    "*".repeat(n.max(1))
                } else {
                    keep(s, 6, 0)
                }
            }
            Mask::Date => match s.split_once('-') {
                Some((year, _)) if year.len() == 4 => format!("{year}-**-**"),
                _ => "*".repeat(s.chars().count().max(1)),
            },
            Mask::Full => "*".repeat(s.chars().count().max(1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(
            Mask::IdNumber.apply("11010519491231002X"),
            "110105********002X"
        );
        assert_eq!(Mask::Name.apply("张三丰"), "张**");
        assert_eq!(Mask::Name.apply("李"), "*");
        assert_eq!(Mask::Phone.apply("13812345678"), "138****5678");
        assert_eq!(
            Mask::Address.apply("广东省佛山市三水区西南街道"),
            "广东省佛山市*******"
        );
        assert_eq!(Mask::Date.apply("1949-12-31"), "1949-**-**");
        assert_eq!(Mask::Full.apply("abc"), "***");
        assert_eq!(Mask::IdNumber.apply("short"), "*****");
    }
}
