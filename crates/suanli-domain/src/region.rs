//! Administrative divisions by their GB/T 2260 six-digit code.
//!
//! A code is two digits of province, two of prefecture and two of county: `310000` is Shanghai,
//! `510100` Chengdu, `310115` Pudong. Every code whose province is known and whose shape is legal
//! is accepted, because the full standard lists some 3,000 counties and enterprises come from all
//! of them; the table here names every province-level division and every city the voucher
//! programmes and the national hubs mention, and [`RegionCode::name`] answers `None` for the rest.

use std::fmt;

/// A GB/T 2260 administrative-division code. Once constructed, its shape is legal and its
/// province exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RegionCode(u32);

/// Chinese and English names of a division.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionName {
    pub chinese: &'static str,
    pub english: &'static str,
}

/// Why a region code was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegionError {
    #[error("region code must be exactly six digits, got {0:?}")]
    NotSixDigits(String),
    #[error("region code {0} names no province-level division (its first two digits are unknown)")]
    UnknownProvince(String),
    #[error("region code {0} has a county part but no prefecture part (digits 3-4 are 00)")]
    CountyWithoutPrefecture(String),
}

/// The level a code stands for, read from its zeros.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionLevel {
    /// `100000`, the whole country, used by organisations registered with central bodies.
    National,
    Province,
    Prefecture,
    County,
}

const TABLE: &[(u32, &str, &str)] = &[
    (100000, "中华人民共和国", "China (national)"),
    (110000, "北京市", "Beijing"),
    (110108, "海淀区", "Haidian District, Beijing"),
    (110115, "大兴区", "Daxing District, Beijing (home of Beijing E-Town)"),
    (120000, "天津市", "Tianjin"),
    (130000, "河北省", "Hebei"),
    (130700, "张家口市", "Zhangjiakou"),
    (130730, "怀来县", "Huailai County, Zhangjiakou"),
    (140000, "山西省", "Shanxi"),
    (150000, "内蒙古自治区", "Inner Mongolia"),
    (150100, "呼和浩特市", "Hohhot"),
    (150123, "和林格尔县", "Horinger County, Hohhot"),
    (210000, "辽宁省", "Liaoning"),
    (220000, "吉林省", "Jilin"),
    (230000, "黑龙江省", "Heilongjiang"),
    (310000, "上海市", "Shanghai"),
    (310115, "浦东新区", "Pudong New Area, Shanghai"),
    (310118, "青浦区", "Qingpu District, Shanghai"),
    (320000, "江苏省", "Jiangsu"),
    (320500, "苏州市", "Suzhou"),
    (330000, "浙江省", "Zhejiang"),
    (330100, "杭州市", "Hangzhou"),
    (330200, "宁波市", "Ningbo"),
    (340000, "安徽省", "Anhui"),
    (340200, "芜湖市", "Wuhu"),
    (350000, "福建省", "Fujian"),
    (350100, "福州市", "Fuzhou"),
    (360000, "江西省", "Jiangxi"),
    (370000, "山东省", "Shandong"),
    (370100, "济南市", "Jinan"),
    (370200, "青岛市", "Qingdao"),
    (410000, "河南省", "Henan"),
    (410100, "郑州市", "Zhengzhou"),
    (420000, "湖北省", "Hubei"),
    (430000, "湖南省", "Hunan"),
    (440000, "广东省", "Guangdong"),
    (440100, "广州市", "Guangzhou"),
    (440200, "韶关市", "Shaoguan"),
    (440300, "深圳市", "Shenzhen"),
    (440305, "南山区", "Nanshan District, Shenzhen"),
    (450000, "广西壮族自治区", "Guangxi"),
    (460000, "海南省", "Hainan"),
    (500000, "重庆市", "Chongqing"),
    (510000, "四川省", "Sichuan"),
    (510100, "成都市", "Chengdu"),
    (520000, "贵州省", "Guizhou"),
    (520100, "贵阳市", "Guiyang"),
    (520400, "安顺市", "Anshun"),
    (530000, "云南省", "Yunnan"),
    (540000, "西藏自治区", "Xizang (Tibet)"),
    (610000, "陕西省", "Shaanxi"),
    (620000, "甘肃省", "Gansu"),
    (621000, "庆阳市", "Qingyang"),
    (630000, "青海省", "Qinghai"),
    (640000, "宁夏回族自治区", "Ningxia"),
    (640500, "中卫市", "Zhongwei"),
    (650000, "新疆维吾尔自治区", "Xinjiang"),
    (710000, "台湾省", "Taiwan"),
    (810000, "香港特别行政区", "Hong Kong"),
    (820000, "澳门特别行政区", "Macao"),
];

impl RegionCode {
    /// Parses six ASCII digits.
    pub fn parse(text: &str) -> Result<RegionCode, RegionError> {
        if text.len() != 6 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(RegionError::NotSixDigits(text.to_owned()));
        }
        let code: u32 = text.parse().map_err(|_| RegionError::NotSixDigits(text.to_owned()))?;
        let province = code / 10_000 * 10_000;
        if province != 100_000 && TABLE.binary_search_by_key(&province, |row| row.0).is_err() {
            return Err(RegionError::UnknownProvince(text.to_owned()));
        }
        if province == 100_000 && code != 100_000 {
            return Err(RegionError::UnknownProvince(text.to_owned()));
        }
        if (code / 100).is_multiple_of(100) && !code.is_multiple_of(100) {
            return Err(RegionError::CountyWithoutPrefecture(text.to_owned()));
        }
        Ok(RegionCode(code))
    }

    pub const fn code(self) -> u32 {
        self.0
    }

    pub fn level(self) -> RegionLevel {
        match (self.0, self.0 % 10_000, self.0 % 100) {
            (100_000, _, _) => RegionLevel::National,
            (_, 0, _) => RegionLevel::Province,
            (_, _, 0) => RegionLevel::Prefecture,
            _ => RegionLevel::County,
        }
    }

    /// The names of this division, if it is in the table.
    pub fn name(self) -> Option<RegionName> {
        TABLE
            .binary_search_by_key(&self.0, |row| row.0)
            .ok()
            .map(|index| RegionName { chinese: TABLE[index].1, english: TABLE[index].2 })
    }

    /// The province-level division this code lies in (itself for a province).
    pub fn province(self) -> RegionCode {
        if self.level() == RegionLevel::National { self } else { RegionCode(self.0 / 10_000 * 10_000) }
    }

    /// Whether this division lies inside `outer` (a division lies inside itself). Everything lies
    /// inside the national code; a county lies inside its prefecture and its province.
    pub fn within(self, outer: RegionCode) -> bool {
        match outer.level() {
            RegionLevel::National => true,
            RegionLevel::Province => self.0 / 10_000 == outer.0 / 10_000 && self.level() != RegionLevel::National,
            RegionLevel::Prefecture => self.0 / 100 == outer.0 / 100,
            RegionLevel::County => self.0 == outer.0,
        }
    }

    /// Every division the table names, in code order.
    pub fn known() -> impl Iterator<Item = (RegionCode, RegionName)> {
        TABLE.iter().map(|&(code, chinese, english)| (RegionCode(code), RegionName { chinese, english }))
    }
}

impl fmt::Display for RegionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:06}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_every_province_is_present() {
        assert!(TABLE.windows(2).all(|pair| pair[0].0 < pair[1].0), "binary search needs order");
        let provinces = TABLE.iter().filter(|row| row.0 % 10_000 == 0 && row.0 != 100_000).count();
        assert_eq!(provinces, 34, "23 provinces, 5 autonomous regions, 4 municipalities, 2 SARs");
        for (code, _, _) in TABLE {
            assert!(RegionCode::parse(&format!("{code:06}")).is_ok(), "{code}");
        }
    }

    #[test]
    fn parse_refuses_each_fault() {
        let check = |text: &str, expect: RegionError| assert_eq!(RegionCode::parse(text), Err(expect));
        check("31000", RegionError::NotSixDigits("31000".into()));
        check("31000a", RegionError::NotSixDigits("31000a".into()));
        check("+31000", RegionError::NotSixDigits("+31000".into()));
        check("990000", RegionError::UnknownProvince("990000".into()));
        check("100100", RegionError::UnknownProvince("100100".into()));
        check("310015", RegionError::CountyWithoutPrefecture("310015".into()));
    }

    #[test]
    fn containment_follows_the_code_hierarchy() {
        let code = |text: &str| RegionCode::parse(text).unwrap();
        assert!(code("310115").within(code("310000")));
        assert!(code("510100").within(code("510000")));
        assert!(code("150123").within(code("150100")));
        assert!(!code("510100").within(code("310000")));
        assert!(!code("440300").within(code("440200")));
        assert!(code("440300").within(code("100000")));
        assert!(!code("100000").within(code("310000")));
        assert_eq!(code("310115").province(), code("310000"));
        assert_eq!(code("510100").name().unwrap().english, "Chengdu");
        assert_eq!(code("510104").name(), None);
        assert_eq!(code("510104").level(), RegionLevel::County);
    }
}
